package tessera

/*
#include <stdint.h>
#include <stdlib.h>
#include <tessera.h>

// The C side of an Executor and of the receipt function (callbacks.go and
// executor.go export the Go side); userdata carries a runtime/cgo handle.
extern tessera_result tesseraGoExecute(uintptr_t handle, tessera_job_run *run);
extern _Bool tesseraGoAccepting(uintptr_t handle);
extern void tesseraGoReceipt(uintptr_t handle, uint64_t job, uint8_t *receipt, size_t len);

static tessera_result tessera_go_execute(void *userdata, tessera_job_run *run) {
	return tesseraGoExecute((uintptr_t)userdata, run);
}

static bool tessera_go_accepting(void *userdata) {
	return tesseraGoAccepting((uintptr_t)userdata);
}

static void tessera_go_receipt(void *userdata, uint64_t job, const uint8_t *receipt, size_t len) {
	tesseraGoReceipt((uintptr_t)userdata, job, (uint8_t *)receipt, len);
}

// The executor struct lives on this stack frame: the runtime copies it.
static void tessera_go_fill_executor(tessera_executor *e, uintptr_t handle, bool accepting) {
	e->size = sizeof *e;
	e->userdata = (void *)handle;
	e->run = tessera_go_execute;
	e->accepting_jobs = accepting ? tessera_go_accepting : NULL;
}

static tessera_result tessera_go_runtime_new(tessera_runtime_config *config, tessera_signer *signer,
		uintptr_t executor, bool accepting, char *error, size_t error_len, tessera_runtime **out) {
	tessera_executor e;
	if (executor != 0) {
		tessera_go_fill_executor(&e, executor, accepting);
		config->executor = &e;
	}
	tessera_result r = tessera_runtime_new(config, signer, error, error_len, out);
	config->executor = NULL;
	return r;
}

static tessera_result tessera_go_runtime_from_toml(const char *path, uintptr_t executor, bool accepting,
		char *error, size_t error_len, tessera_runtime **out) {
	tessera_executor e;
	if (executor == 0) {
		return tessera_runtime_new_from_toml(path, error, error_len, out);
	}
	tessera_go_fill_executor(&e, executor, accepting);
	return tessera_runtime_new_from_toml_with(path, &e, error, error_len, out);
}

static tessera_result tessera_go_set_receipt(tessera_runtime *rt, uintptr_t handle) {
	if (handle == 0) {
		return tessera_runtime_set_receipt_callback(rt, NULL, NULL);
	}
	return tessera_runtime_set_receipt_callback(rt, tessera_go_receipt, (void *)handle);
}
*/
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Config says where a Runtime connects and how it trusts the coordinator,
// what it runs jobs on and where it keeps results. Start from
// DefaultConfig.
type Config struct {
	// Coordinator is the coordinator's "host:port".
	Coordinator string
	// ServerName is the name on its certificate ("": the host part of
	// Coordinator).
	ServerName string
	// CAFile is the PEM file of the CA that signs the coordinator's
	// certificate; or "" and PinnedKey set.
	CAFile string
	// PinnedKey is the SHA-256 of the coordinator's SubjectPublicKeyInfo,
	// or nil.
	PinnedKey *Hash
	// StoreDir is the directory where results wait for acknowledgement,
	// crash-safely ("": in memory only, lost on exit).
	StoreDir string
	// Policy holds offers, prices and timers.
	Policy Policy
	// DeviceIndex is the Vulkan device's index, or -1 for the default
	// device (or DeviceName).
	DeviceIndex int32
	// DeviceName is part of the Vulkan device name to pick, or "".
	DeviceName string
	// SPIRVValGate runs the Khronos SPIR-V validator on every new kernel.
	SPIRVValGate bool
	// DrainTimeout is how long a drain waits for acknowledgements (whole
	// milliseconds).
	DrainTimeout time.Duration
	// Executor runs jobs in the host instead of on the Vulkan device (nil:
	// the device). The device is opened either way: its capabilities make
	// the evidence, and Job.RunOnDevice runs jobs on it.
	Executor *Executor
}

// DefaultConfig returns the library's defaults; set Coordinator and the
// trust fields.
func DefaultConfig() Config {
	var c C.tessera_runtime_config
	mustOK(C.tessera_runtime_config_default(&c), "DefaultConfig")
	return Config{
		Policy:       policyFromC(&c.policy),
		DeviceIndex:  int32(c.device_index),
		SPIRVValGate: bool(c.spirv_val_gate),
		DrainTimeout: time.Duration(c.drain_timeout_ms) * time.Millisecond,
	}
}

// Status is what an operator sees of a runtime.
type Status struct {
	// State is the connection state.
	State ConnState
	// Finished says whether the runtime has drained and stopped.
	Finished bool
	// DeviceUnavailable says the device takes no new work now.
	DeviceUnavailable bool
	// JobsCompleted counts jobs completed and acknowledged.
	JobsCompleted uint64
	// JobsFailed counts jobs failed (acknowledged).
	JobsFailed uint64
	// ActiveJobs counts the jobs held now.
	ActiveJobs uint64
	// Earnings is the sum of the prices of acknowledged jobs.
	Earnings uint64
	// Sessions counts the sessions established since the start.
	Sessions uint64
}

// Runtime is a provider on the network: it keeps a TLS session with the
// coordinator (reconnecting with backoff), takes offers by its policy, runs
// jobs on the Vulkan device or the host's Executor, stores results until
// they are acknowledged, and drains on request.
//
// Run gives it a thread of its own until it has drained; a program with its
// own event loop steps it instead (FD, NextWakeup, Step). Status,
// StatusText, Drain, SetAcceptingJobs and FD may be called from any
// goroutine at any time, also from its callbacks.
type Runtime struct {
	// g holds the calls that need the runtime to themselves (Run, Step,
	// NextWakeup, SetReceiptCallback, Close); they refuse to overlap with
	// ErrInUse, as the library does. Its callbacks (KeyStore, Executor,
	// receipt function) mark their threads in it.
	g *callGuard // apart from the Runtime: its callbacks' handles reach it

	mu      sync.Mutex
	idle    sync.Cond // signalled when users drops to 0
	ptr     *C.tessera_runtime
	users   int  // calls using ptr now
	closing bool // Close was called: no Run or Step starts
	running bool // Run is between start and wait

	handles []cgo.Handle // KeyStore and Executor state, deleted with it
	receipt cgo.Handle   // the receipt function's state, or 0
}

// executorHandle makes the handle of an Executor's state, bound to the
// runtime's guard once the runtime exists.
func executorHandle(ex *Executor, op string) (cgo.Handle, *executorState, error) {
	if ex == nil {
		return 0, nil, nil
	}
	if ex.Run == nil {
		return 0, nil, &Error{Code: CodeInvalidConfig, Op: op, Detail: "Executor.Run is required"}
	}
	st := &executorState{ex: *ex}
	return cgo.NewHandle(st), st, nil
}

// NewRuntime makes a provider from config, signing with signer, which it
// takes over (also when it fails). A configuration error is
// ErrInvalidConfig with what is wrong in its Detail; a Vulkan device that
// cannot be opened an error of ClassVulkan.
func NewRuntime(config Config, signer *Signer) (*Runtime, error) {
	const op = "NewRuntime"
	// The runtime's guard is needed before the runtime: the callbacks of
	// the signer and the executor mark their threads in it.
	rt := &Runtime{g: &callGuard{}}
	g := rt.g
	// The signer is taken first, as the library takes it: whatever fails
	// next, it is gone.
	sptr, _, signerH, err := signer.take(op, g)
	if err != nil {
		return nil, err
	}
	refuse := func(err error) (*Runtime, error) {
		C.tessera_signer_free(sptr)
		signerH.delete()
		return nil, err
	}
	for field, s := range map[string]string{
		"Coordinator": config.Coordinator, "ServerName": config.ServerName, "CAFile": config.CAFile,
		"StoreDir": config.StoreDir, "DeviceName": config.DeviceName,
	} {
		if err := noNUL(op, field, s); err != nil {
			return refuse(err)
		}
	}
	exH, exState, err := executorHandle(config.Executor, op)
	if err != nil {
		return refuse(err)
	}
	var strs cStrings
	defer strs.free()
	var c C.tessera_runtime_config
	mustOK(C.tessera_runtime_config_default(&c), op)
	c.coordinator = strs.add(config.Coordinator)
	c.server_name = strs.add(config.ServerName)
	c.ca_file = strs.add(config.CAFile)
	c.store_dir = strs.add(config.StoreDir)
	c.device_name = strs.add(config.DeviceName)
	if config.PinnedKey != nil {
		// C memory: the config struct must hold no Go pointer.
		pin := C.CBytes(config.PinnedKey[:])
		defer C.free(pin)
		c.pinned_key_sha256 = (*C.uint8_t)(pin)
	}
	c.policy = config.Policy.toC()
	c.device_index = C.int32_t(config.DeviceIndex)
	c.spirv_val_gate = cBool(config.SPIRVValGate)
	c.drain_timeout_ms = C.uint64_t(config.DrainTimeout / time.Millisecond)
	accepting := config.Executor != nil && config.Executor.AcceptingJobs != nil
	if exState != nil {
		exState.guard = g
	}
	var why [512]C.char
	var ptr *C.tessera_runtime
	r := C.tessera_go_runtime_new(&c, sptr, C.uintptr_t(exH), C.bool(accepting), &why[0], C.size_t(len(why)), &ptr)
	if r != C.TESSERA_OK {
		signerH.delete()
		if exH != 0 {
			exH.Delete()
		}
		return nil, &Error{Code: Code(r), Op: op, Detail: cText(why[:])}
	}
	rt.ptr = ptr
	rt.idle.L = &rt.mu
	for _, h := range []cgo.Handle{signerH.key, signerH.hw, exH} {
		if h != 0 {
			rt.handles = append(rt.handles, h)
		}
	}
	runtime.SetFinalizer(rt, (*Runtime).finalize)
	return rt, nil
}

// NewRuntimeFromTOML makes a provider from the operator's TOML file at path
// (README, "The operator program"): device key (created if missing),
// result store, GPU and coordinator as the file says. With executor
// (nil: none) the host runs the jobs. ErrIO when the file cannot be read,
// ErrInvalidConfig when it is wrong; the Detail says what.
func NewRuntimeFromTOML(path string, executor *Executor) (*Runtime, error) {
	const op = "NewRuntimeFromTOML"
	if err := noNUL(op, "path", path); err != nil {
		return nil, err
	}
	exH, exState, err := executorHandle(executor, op)
	if err != nil {
		return nil, err
	}
	rt := &Runtime{g: &callGuard{}}
	if exState != nil {
		exState.guard = rt.g
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	accepting := executor != nil && executor.AcceptingJobs != nil
	var why [512]C.char
	var ptr *C.tessera_runtime
	r := C.tessera_go_runtime_from_toml(cpath, C.uintptr_t(exH), C.bool(accepting), &why[0], C.size_t(len(why)), &ptr)
	if r != C.TESSERA_OK {
		if exH != 0 {
			exH.Delete()
		}
		return nil, &Error{Code: Code(r), Op: op, Detail: cText(why[:])}
	}
	rt.ptr = ptr
	rt.idle.L = &rt.mu
	if exH != 0 {
		rt.handles = append(rt.handles, exH)
	}
	runtime.SetFinalizer(rt, (*Runtime).finalize)
	return rt, nil
}

// acquire lends ptr to one call; release ends it.
func (r *Runtime) acquire(op string) (*C.tessera_runtime, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr == nil {
		return nil, errClosed(op, "runtime closed")
	}
	r.users++
	return r.ptr, nil
}

func (r *Runtime) release() {
	r.mu.Lock()
	if r.users--; r.users == 0 {
		r.idle.Broadcast()
	}
	r.mu.Unlock()
	runtime.KeepAlive(r)
}

// beginExclusive takes the runtime for a call that needs it to itself.
func (r *Runtime) beginExclusive(op string) (*C.tessera_runtime, error) {
	if err := r.g.tryLock(op); err != nil {
		return nil, err
	}
	r.mu.Lock()
	closing := r.closing
	r.mu.Unlock()
	if closing {
		r.g.unlock()
		return nil, errClosed(op, "runtime closed")
	}
	ptr, err := r.acquire(op)
	if err != nil {
		r.g.unlock()
		return nil, err
	}
	return ptr, nil
}

func (r *Runtime) endExclusive() {
	r.release()
	r.g.unlock()
}

// Run gives the runtime a thread of its own and returns when it has
// drained: after ctx is done (it then drains, within its drain timeout),
// after Drain, or when the coordinator drains it. It returns nil when the
// runtime drained, else the error that stopped it (ErrStopped when it had
// drained before). Only the calls that may run at any time apply
// meanwhile; Step and a second Run get ErrInUse.
func (r *Runtime) Run(ctx context.Context) error {
	const op = "Runtime.Run"
	ptr, err := r.beginExclusive(op)
	if err != nil {
		return err
	}
	defer r.endExclusive()
	if err := check(C.tessera_runtime_start(ptr), op); err != nil {
		return err
	}
	r.mu.Lock()
	r.running = true
	r.mu.Unlock()
	stop := make(chan struct{})
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		select {
		case <-ctx.Done():
			// ptr stays valid: Run holds it until the watcher ends.
			C.tessera_runtime_drain(ptr, 0)
		case <-stop:
		}
	}()
	rc := C.tessera_runtime_wait(ptr)
	close(stop)
	<-watcher
	r.mu.Lock()
	r.running = false
	r.mu.Unlock()
	return check(rc, op)
}

// Step is one turn of the host's own loop: it waits at most maxWait for
// the network or a job (0: not at all), then does all work that is ready.
// Call it when FD is readable or at NextWakeup, and at least every few
// hundred milliseconds while jobs run. ErrStopped once it has drained.
func (r *Runtime) Step(maxWait time.Duration) error {
	const op = "Runtime.Step"
	ptr, err := r.beginExclusive(op)
	if err != nil {
		return err
	}
	defer r.endExclusive()
	return check(C.tessera_runtime_step(ptr, C.uint64_t(maxWait/time.Millisecond)), op)
}

// NextWakeup returns how long from now the runtime must be stepped (0: now),
// rounded up to the millisecond (on Linux FD also becomes readable at that
// time), and false when only FD matters.
func (r *Runtime) NextWakeup() (time.Duration, bool, error) {
	const op = "Runtime.NextWakeup"
	ptr, err := r.beginExclusive(op)
	if err != nil {
		return 0, false, err
	}
	defer r.endExclusive()
	var ms C.uint64_t
	rc := C.tessera_runtime_next_wakeup(ptr, &ms)
	if rc == C.TESSERA_NOTHING {
		return 0, false, nil
	}
	if err := check(rc, op); err != nil {
		return 0, false, err
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

// FD returns the descriptor that becomes readable when the runtime has
// work: poll it for reading; do not read from or close it.
func (r *Runtime) FD() (int, error) {
	const op = "Runtime.FD"
	ptr, err := r.acquire(op)
	if err != nil {
		return -1, err
	}
	defer r.release()
	var fd C.int
	if err := check(C.tessera_runtime_fd(ptr, &fd), op); err != nil {
		return -1, err
	}
	return int(fd), nil
}

// Drain asks the runtime to drain: finish the jobs it holds, take no new
// ones, say goodbye; it stops anyway timeout after the drain starts (0: its
// configured drain timeout), leaving unacknowledged results in the store
// for the next start.
func (r *Runtime) Drain(timeout time.Duration) error {
	const op = "Runtime.Drain"
	ptr, err := r.acquire(op)
	if err != nil {
		return err
	}
	defer r.release()
	return check(C.tessera_runtime_drain(ptr, C.uint64_t(timeout/time.Millisecond)), op)
}

// SetAcceptingJobs says whether the device takes new work (a render engine
// says false while its user renders): offers are declined meanwhile; jobs
// already taken run on. It applies at the next step.
func (r *Runtime) SetAcceptingJobs(accepting bool) error {
	const op = "Runtime.SetAcceptingJobs"
	ptr, err := r.acquire(op)
	if err != nil {
		return err
	}
	defer r.release()
	return check(C.tessera_runtime_set_accepting_jobs(ptr, cBool(accepting)), op)
}

// PublicKey returns the provider's public key: the device key that signs its
// evidence and receipts, with which a settlement party verifies them. Any
// goroutine.
func (r *Runtime) PublicKey() (PublicKey, error) {
	const op = "Runtime.PublicKey"
	ptr, err := r.acquire(op)
	if err != nil {
		return PublicKey{}, err
	}
	defer r.release()
	var key PublicKey
	// C writes 32 bytes into C memory, copied out after the call.
	out := (*C.uint8_t)(C.malloc(32))
	defer C.free(unsafe.Pointer(out))
	if err := check(C.tessera_runtime_public_key(ptr, out), op); err != nil {
		return PublicKey{}, err
	}
	copy(key[:], C.GoBytes(unsafe.Pointer(out), 32))
	return key, nil
}

// Status returns the runtime's status as of its last step.
func (r *Runtime) Status() (Status, error) {
	const op = "Runtime.Status"
	ptr, err := r.acquire(op)
	if err != nil {
		return Status{}, err
	}
	defer r.release()
	var s C.tessera_status
	s.size = C.size_t(unsafe.Sizeof(s))
	if err := check(C.tessera_runtime_status(ptr, &s), op); err != nil {
		return Status{}, err
	}
	return Status{
		State:             ConnState(s.state),
		Finished:          bool(s.finished),
		DeviceUnavailable: bool(s.device_unavailable),
		JobsCompleted:     uint64(s.jobs_completed),
		JobsFailed:        uint64(s.jobs_failed),
		ActiveJobs:        uint64(s.active_jobs),
		Earnings:          uint64(s.earnings),
		Sessions:          uint64(s.sessions),
	}, nil
}

// StatusText returns the runtime's status line, as tessera-agent logs it,
// with the last connection error.
func (r *Runtime) StatusText() (string, error) {
	const op = "Runtime.StatusText"
	ptr, err := r.acquire(op)
	if err != nil {
		return "", err
	}
	defer r.release()
	for {
		var need C.size_t
		rc := C.tessera_runtime_status_text(ptr, nil, 0, &need)
		if rc != C.TESSERA_BUFFER_TOO_SMALL {
			return "", check(rc, op)
		}
		buf := make([]C.char, need)
		rc = C.tessera_runtime_status_text(ptr, &buf[0], C.size_t(len(buf)), nil)
		if rc == C.TESSERA_BUFFER_TOO_SMALL {
			continue // the line grew meanwhile
		}
		if err := check(rc, op); err != nil {
			return "", err
		}
		return cText(buf), nil
	}
}

// ReceiptFunc receives each receipt the provider signs (completed and
// failed jobs alike), once it is stored and before it is sent: a host that
// keeps its own receipt log for settlement, or shows earnings as they are
// signed. receipt is the host's own copy. It is called from the thread
// that steps the runtime and should return quickly.
type ReceiptFunc func(job uint64, receipt []byte)

type receiptState struct {
	f     ReceiptFunc
	guard *callGuard
}

// SetReceiptCallback installs f as the runtime's receipt function (nil
// removes it). Set it before Run: ErrInUse while the runtime runs.
func (r *Runtime) SetReceiptCallback(f ReceiptFunc) error {
	const op = "Runtime.SetReceiptCallback"
	ptr, err := r.beginExclusive(op)
	if err != nil {
		return err
	}
	defer r.endExclusive()
	var h cgo.Handle
	if f != nil {
		h = cgo.NewHandle(&receiptState{f: f, guard: r.g})
	}
	if err := check(C.tessera_go_set_receipt(ptr, C.uintptr_t(h)), op); err != nil {
		if h != 0 {
			h.Delete()
		}
		return err
	}
	// The library no longer holds the function replaced.
	if r.receipt != 0 {
		r.receipt.Delete()
	}
	r.receipt = h
	return nil
}

// Close frees the runtime. A running runtime is drained first (within its
// drain timeout) and Close waits until Run has returned. Close from one of
// the runtime's own callbacks gets ErrInUse: its Run cannot end while the
// callback waits. A second Close does nothing.
func (r *Runtime) Close() error {
	const op = "Runtime.Close"
	r.mu.Lock()
	if r.ptr == nil {
		r.mu.Unlock()
		return nil
	}
	if r.running && r.g.inCallback() {
		r.mu.Unlock()
		return &Error{Code: CodeInUse, Op: op, Detail: "called from a callback of the running runtime"}
	}
	r.closing = true
	running, ptr := r.running, r.ptr
	if running {
		r.users++
	}
	r.mu.Unlock()
	if running {
		// Outside r.mu: a callback the drain may run can call Status.
		C.tessera_runtime_drain(ptr, 0)
		r.release()
	}
	// Wait for Run or Step to end.
	if err := r.g.lock(op); err != nil {
		return err
	}
	defer r.g.unlock()
	r.mu.Lock()
	for r.users > 0 {
		r.idle.Wait()
	}
	ptr = r.ptr
	r.ptr = nil // calls from here on find it closed
	r.mu.Unlock()
	// Outside r.mu: a log line the library writes meanwhile may go to a
	// function that asks for the status.
	r.free(ptr)
	return nil
}

// free releases the runtime ptr and the callbacks' handles (no call uses
// them: Close waited for every one, or the runtime is unreachable).
func (r *Runtime) free(ptr *C.tessera_runtime) {
	if ptr != nil {
		C.tessera_runtime_free(ptr)
	}
	for _, h := range r.handles {
		h.Delete()
	}
	r.handles = nil
	if r.receipt != 0 {
		r.receipt.Delete()
		r.receipt = 0
	}
	runtime.SetFinalizer(r, nil)
}

func (r *Runtime) finalize() {
	if r.ptr != nil {
		finalized.runtimes.Add(1)
	}
	ptr := r.ptr
	r.ptr = nil
	r.free(ptr)
}

//export tesseraGoReceipt
func tesseraGoReceipt(handle C.uintptr_t, job C.uint64_t, receipt *C.uint8_t, n C.size_t) {
	st := cgo.Handle(handle).Value().(*receiptState)
	defer st.guard.enterCallback()()
	defer func() {
		if v := recover(); v != nil {
			callbackPanics.add()
		}
	}()
	st.f(uint64(job), C.GoBytes(unsafe.Pointer(receipt), C.int(n)))
}

// callbackPanics counts panics recovered in callbacks that cannot report
// them to the library (the receipt function), for the tests.
var callbackPanics counter

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
