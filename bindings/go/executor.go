package tessera

/*
#include <stdint.h>
#include <string.h>
#include <tessera.h>
*/
import "C"

import (
	"errors"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Executor lets the host run a Runtime's jobs itself (a render engine with
// its own queue, a simulator, a test) instead of the runtime's Vulkan
// device: Run is called on the runtime's worker thread, one job at a time.
// What Run leaves in the read-back buffers' Output is what the provider
// returns, Merkle-hashes and signs.
type Executor struct {
	// Run runs one job and returns nil when its outputs are written. An
	// error fails the job: with the reason set by Job.Fail, else as the
	// device would when the error is (or wraps) the error of
	// Job.RunOnDevice, else as a host failure (ReceiptHost). Required.
	Run func(job *Job) error
	// AcceptingJobs says whether the host takes work now; it is asked
	// after every job and about every 100 ms while the answer is no. nil:
	// always.
	AcceptingJobs func() bool
}

type executorState struct {
	ex    Executor
	guard *callGuard // the runtime's
}

// Job is one job given to an Executor, during its Run. Its slices are Go
// copies (Output is copied back when Run returns nil): Run may keep them.
// Its methods work only until Run returns (then ErrStopped).
type Job struct {
	// ID is the job's id.
	ID uint64
	// SPIRV holds the kernel, verified against the assignment's root.
	SPIRV []byte
	// EntryPoint is the kernel's entry point.
	EntryPoint string
	// Specialization holds the specialization constants.
	Specialization []SpecConstant
	// PushConstants holds the push-constant bytes.
	PushConstants []byte
	// Grid is the workgroup counts in x, y, z.
	Grid [3]uint32
	// Buffers are the job's buffers: Init holds each one's initial
	// contents, and a read-back buffer's Output its Len bytes, zeroed (the
	// device's results after RunOnDevice), for Run to fill.
	Buffers []KernelBuffer
	// Timeout is the time left until the job's deadline when Run was
	// called.
	Timeout time.Duration

	mu  sync.Mutex
	run *C.tessera_job_run
	c   C.tessera_kernel_job // the library's view: its output memory
}

// Cancelled reports whether the job no longer needs running (cancelled by
// the coordinator, its deadline passed, its session ended): a Run that can
// stop early checks it and returns any error; the result is discarded.
// It is true after Run has returned.
func (j *Job) Cancelled() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return bool(C.tessera_job_run_cancelled(j.run))
}

// RunOnDevice runs the job on the runtime's own Vulkan device (its kernel
// gate, watchdog and cancellation included) and puts the results in the
// read-back buffers' Output, which Run may change before it returns. On
// failure the job holds the device's reason, detail and usage: return the
// error from Run to fail the job as the device would.
func (j *Job) RunOnDevice() (Usage, error) {
	const op = "Job.RunOnDevice"
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.run == nil {
		return Usage{}, errClosed(op, "the job's Run has returned")
	}
	var u C.tessera_usage
	r := C.tessera_job_run_on_device(j.run, &u)
	if err := check(r, op); err != nil {
		return Usage{}, err
	}
	j.copyOutputsIn()
	return usageFromC(&u), nil
}

// SetUsage sets the usage reported for the job: GPU time in microseconds
// and dispatches (the transfer sizes are the runtime's).
func (j *Job) SetUsage(gpuTimeMicros uint64, dispatches uint32) error {
	const op = "Job.SetUsage"
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.run == nil {
		return errClosed(op, "the job's Run has returned")
	}
	return check(C.tessera_job_run_set_usage(j.run, C.uint64_t(gpuTimeMicros), C.uint32_t(dispatches)), op)
}

// Fail sets why the job failed, for a Run that then returns an error:
// reason a failure status (ReceiptKernelRejected … ReceiptHost), detail its
// reason-specific code (the kernel rule of a refused kernel).
// ErrInvalidArgument for a reason that is none.
func (j *Job) Fail(reason ReceiptStatus, detail uint32) error {
	const op = "Job.Fail"
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.run == nil {
		return errClosed(op, "the job's Run has returned")
	}
	return check(C.tessera_job_run_fail(j.run, C.uint32_t(reason), C.uint32_t(detail)), op)
}

// cBuffers returns the library's buffers of the job (its memory, valid
// during Run).
func (j *Job) cBuffers() []C.tessera_kernel_buffer {
	if j.c.buffer_count == 0 {
		return nil
	}
	return unsafe.Slice(j.c.buffers, j.c.buffer_count)
}

// copyOutputsIn copies the library's output memory into the Go outputs
// (j.mu held).
func (j *Job) copyOutputsIn() {
	for i, b := range j.cBuffers() {
		if bool(b.readback) && b.output != nil {
			copy(j.Buffers[i].Output, unsafe.Slice((*byte)(unsafe.Pointer(b.output)), b.output_len))
		}
	}
}

// copyOutputsOut copies the Go outputs into the library's output memory
// (j.mu held); an Output whose length was changed is an error.
func (j *Job) copyOutputsOut() error {
	for i, b := range j.cBuffers() {
		if !bool(b.readback) || b.output == nil {
			continue
		}
		out := j.Buffers[i].Output
		if len(out) != int(b.output_len) {
			return &Error{Code: CodeInvalidArgument, Op: "Executor.Run",
				Detail: "an Output was replaced by one of another length"}
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(b.output)), b.output_len), out)
	}
	return nil
}

// newJob copies the library's job into Go memory.
func newJob(run *C.tessera_job_run) (*Job, C.tessera_result) {
	j := &Job{run: run, ID: uint64(C.tessera_job_run_id(run))}
	j.c.size = C.size_t(unsafe.Sizeof(j.c))
	if r := C.tessera_job_run_kernel(run, &j.c); r != C.TESSERA_OK {
		return nil, r
	}
	c := &j.c
	j.SPIRV = C.GoBytes(unsafe.Pointer(c.spirv), C.int(c.spirv_len))
	j.EntryPoint = C.GoString(c.entry_point)
	if c.specialization_count > 0 {
		pairs := unsafe.Slice(c.specialization, 2*c.specialization_count)
		for i := 0; i < len(pairs); i += 2 {
			j.Specialization = append(j.Specialization, SpecConstant{ID: uint32(pairs[i]), Value: uint32(pairs[i+1])})
		}
	}
	j.PushConstants = C.GoBytes(unsafe.Pointer(c.push_constants), C.int(c.push_constants_len))
	j.Grid = array3(c.grid)
	for _, b := range j.cBuffers() {
		kb := KernelBuffer{
			Binding:  uint32(b.binding),
			Len:      uint64(b.len),
			Init:     C.GoBytes(unsafe.Pointer(b.init), C.int(b.init_len)),
			Readback: bool(b.readback),
		}
		if kb.Readback {
			kb.Output = make([]byte, b.output_len)
		}
		j.Buffers = append(j.Buffers, kb)
	}
	j.Timeout = time.Duration(c.timeout_ms) * time.Millisecond
	return j, C.TESSERA_OK
}

// executorPanics counts panics recovered in Executor functions, for the
// tests.
var executorPanics counter

//export tesseraGoExecute
func tesseraGoExecute(handle C.uintptr_t, run *C.tessera_job_run) (r C.tessera_result) {
	st := cgo.Handle(handle).Value().(*executorState)
	if st.guard != nil {
		defer st.guard.enterCallback()()
	}
	job, r := newJob(run)
	if r != C.TESSERA_OK {
		return r
	}
	defer func() {
		if v := recover(); v != nil {
			executorPanics.add()
			r = C.TESSERA_FAIL_BASE + C.TESSERA_RECEIPT_HOST
		}
		// The run is the library's only during this call.
		job.mu.Lock()
		job.run = nil
		job.mu.Unlock()
	}()
	err := st.ex.Run(job)
	job.mu.Lock()
	defer job.mu.Unlock()
	if err == nil {
		err = job.copyOutputsOut()
	}
	if err == nil {
		return C.TESSERA_OK
	}
	// A job failure's own code (RunOnDevice's) fails the job as the device
	// would; any other error is the host's (a code outside those ranges
	// would be read as a job failure's detail).
	var e *Error
	if errors.As(err, &e) {
		switch e.Code.Class() {
		case ClassJobFailed, ClassDispatch, ClassKernelRejected:
			return C.tessera_result(e.Code)
		}
	}
	return C.TESSERA_FAIL_BASE + C.TESSERA_RECEIPT_HOST
}

//export tesseraGoAccepting
func tesseraGoAccepting(handle C.uintptr_t) (ok C.bool) {
	st := cgo.Handle(handle).Value().(*executorState)
	if st.guard != nil {
		defer st.guard.enterCallback()()
	}
	defer func() {
		if v := recover(); v != nil {
			executorPanics.add()
			ok = false
		}
	}()
	return C.bool(st.ex.AcceptingJobs())
}
