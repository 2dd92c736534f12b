package tessera

/*
#include <stdint.h>
#include <tessera.h>

// The C side of a KeyStore's callbacks (callbacks.go exports the Go side).
// userdata carries a runtime/cgo handle, an integer: the library never holds
// a Go pointer.
extern tessera_result tesseraGoKeyStorePublicKey(uintptr_t handle, uint8_t *public_key);
extern tessera_result tesseraGoKeyStoreSign(uintptr_t handle, uint8_t *message, size_t len, uint8_t *signature);

static tessera_result tessera_go_public_key(void *userdata, uint8_t *public_key) {
	return tesseraGoKeyStorePublicKey((uintptr_t)userdata, public_key);
}

static tessera_result tessera_go_sign(void *userdata, const uint8_t *message, size_t len, uint8_t *signature) {
	return tesseraGoKeyStoreSign((uintptr_t)userdata, (uint8_t *)message, len, signature);
}

extern tessera_result tesseraGoHardwareReport(uintptr_t handle, uint8_t *nonce, uint16_t *kind, uint8_t *hash);

static tessera_result tessera_go_hardware_report(void *userdata, const uint8_t *nonce, uint16_t *kind, uint8_t *hash) {
	return tesseraGoHardwareReport((uintptr_t)userdata, (uint8_t *)nonce, kind, hash);
}

// Sets the signer's hardware report callback to the Go function behind
// handle, or removes it (handle 0).
static tessera_result tessera_go_signer_set_hardware_report(tessera_signer *signer, uintptr_t handle) {
	if (handle == 0) {
		return tessera_signer_set_hardware_report(signer, NULL, NULL);
	}
	return tessera_signer_set_hardware_report(signer, tessera_go_hardware_report, (void *)handle);
}

static tessera_result tessera_go_signer_from_key_store(uintptr_t handle, tessera_signer **out) {
	tessera_signer_callbacks cb;
	cb.size = sizeof cb;
	cb.userdata = (void *)handle;
	cb.public_key = tessera_go_public_key;
	cb.sign = tessera_go_sign;
	return tessera_signer_from_callbacks(&cb, out);
}
*/
import "C"

import (
	"errors"
	"runtime"
	"runtime/cgo"
	"sync"
	"sync/atomic"
)

// KeyStore is a device key kept outside the library: a secure element, a
// TPM, a remote signing service. NewSignerFromKeyStore puts it behind a
// Signer.
type KeyStore interface {
	// PublicKey returns the key's Ed25519 public key. It is called once,
	// by NewSignerFromKeyStore.
	PublicKey() (PublicKey, error)
	// Sign signs message with the key (evidence at each connection, each
	// receipt). An error that is or wraps ErrSignerUnavailable says the
	// key is busy: the agent tries again later. Any other error fails the
	// signature (ErrSignerFailed). It is called on the goroutine or thread
	// that called into the agent or runtime holding the signer.
	Sign(message []byte) (Signature, error)
}

// keyStoreState is what a KeyStore's cgo handle points at.
type keyStoreState struct {
	ks KeyStore
	// owner is the guard of the handle whose calls run the callbacks now:
	// the signer's own, then the agent's or runtime's that took it over.
	owner atomic.Pointer[callGuard]
	// lastErr is the error or panic of the last failed callback, for the
	// error of the call that ran it.
	mu      sync.Mutex
	lastErr error
}

func (st *keyStoreState) setErr(err error) {
	st.mu.Lock()
	st.lastErr = err
	st.mu.Unlock()
}

// takeErr returns and clears the last callback error.
func (st *keyStoreState) takeErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	err := st.lastErr
	st.lastErr = nil
	return err
}

// callbackResult is the code a callback returns for err: the code of an
// *Error it carries, else fallback.
func callbackResult(err error, fallback C.tessera_result) C.tessera_result {
	var e *Error
	if errors.As(err, &e) && e.Code != CodeOK {
		return C.tessera_result(e.Code)
	}
	return fallback
}

// HardwareReportFunc names a hardware attestation report (a GPU's
// confidential-computing report, a TPM quote) for the evidence about to
// be signed: made for nonce, the evidence's hardware-report nonce
// (SHA-256 of "tessera/hw-nonce/v1", the coordinator's challenge, the
// device key and the session key: docs/PROTOCOL.md, "Hardware attestation
// reports"), it returns the report's kind and the SHA-256 of its bytes,
// and keeps the bytes for whoever verifies the evidence. An error, a
// panic or kind HardwareReportNone names no report: the evidence then
// stands on the device key alone, and the library logs a warning
// (SetLogger) for an error or a panic. It
// is called at each connection, on the goroutine or thread that called
// into the agent or runtime holding the signer, with the same rules as
// KeyStore.Sign (a call into that agent or runtime from it gets
// ErrInUse). The library holds the function until the signer, or the
// agent or runtime that took it, is freed: a function that refers to its
// own Signer keeps it from being finalized, so Close it.
type HardwareReportFunc func(nonce [32]byte) (HardwareReportKind, [32]byte, error)

// hardwareReportState is what a HardwareReportFunc's cgo handle points at.
type hardwareReportState struct {
	fn HardwareReportFunc
	// owner is the guard of the handle whose calls run the callback now,
	// as keyStoreState's.
	owner atomic.Pointer[callGuard]
}

// Signer is a device signing key: built in (Ed25519 in the library's
// memory) or a KeyStore. NewAgent and NewRuntime take it over.
type Signer struct {
	// g is allocated apart: a KeyStore's handle reaches it, and must not
	// keep the Signer reachable (its finalizer would never run).
	g     *callGuard
	ptr   *C.tessera_signer
	state *keyStoreState // nil for a built-in key
	hs    signerHandles  // the handles of state and of the hardware report function
	gone  string         // why ptr is nil: "closed", "taken by NewAgent"
}

func newSigner(ptr *C.tessera_signer, state *keyStoreState, h cgo.Handle) *Signer {
	s := &Signer{g: &callGuard{}, ptr: ptr, state: state, hs: signerHandles{key: h}}
	if state != nil {
		state.owner.Store(s.g)
	}
	runtime.SetFinalizer(s, (*Signer).finalize)
	return s
}

// NewSignerFromSeed returns a signer holding the Ed25519 key of a 32-byte
// seed.
func NewSignerFromSeed(seed [32]byte) (*Signer, error) {
	var ptr *C.tessera_signer
	r := C.tessera_signer_from_seed(arrayPtr(seed[:]), &ptr)
	if err := check(r, "NewSignerFromSeed"); err != nil {
		return nil, err
	}
	return newSigner(ptr, nil, 0), nil
}

// NewSignerFromPKCS8 returns a signer holding the Ed25519 key of a PKCS#8
// document, as GenerateKey makes it (ErrKeyRejected for anything else).
func NewSignerFromPKCS8(der []byte) (*Signer, error) {
	var ptr *C.tessera_signer
	r := C.tessera_signer_from_pkcs8(bytesPtr(der), C.size_t(len(der)), &ptr)
	runtime.KeepAlive(der)
	if err := check(r, "NewSignerFromPKCS8"); err != nil {
		return nil, err
	}
	return newSigner(ptr, nil, 0), nil
}

// NewSignerFromKeyStore returns a signer whose key lives in ks: ks.PublicKey
// is called now, ks.Sign for every signature.
func NewSignerFromKeyStore(ks KeyStore) (*Signer, error) {
	if ks == nil {
		return nil, &Error{Code: CodeNullArgument, Op: "NewSignerFromKeyStore", Detail: "no KeyStore"}
	}
	state := &keyStoreState{ks: ks}
	h := cgo.NewHandle(state)
	var ptr *C.tessera_signer
	r := C.tessera_go_signer_from_key_store(C.uintptr_t(h), &ptr)
	if r != C.TESSERA_OK {
		err := &Error{Code: Code(r), Op: "NewSignerFromKeyStore"}
		if cause := state.takeErr(); cause != nil {
			err.Detail = cause.Error()
		}
		h.Delete()
		return nil, err
	}
	return newSigner(ptr, state, h), nil
}

// PublicKey returns the signer's public key.
func (s *Signer) PublicKey() (PublicKey, error) {
	const op = "Signer.PublicKey"
	var pk PublicKey
	if err := s.g.lock(op); err != nil {
		return pk, err
	}
	defer s.g.unlock()
	if s.ptr == nil {
		return pk, errClosed(op, "signer "+s.gone)
	}
	r := C.tessera_signer_public_key(s.ptr, arrayPtr(pk[:]))
	runtime.KeepAlive(s)
	return pk, check(r, op)
}

// Sign signs message with the signer's key (a KeyStore signer calls its
// KeyStore). It lets a program put a built-in key behind a KeyStore of its
// own, as a stand-in for a secure element in tests.
func (s *Signer) Sign(message []byte) (Signature, error) {
	const op = "Signer.Sign"
	var sig Signature
	if err := s.g.lock(op); err != nil {
		return sig, err
	}
	defer s.g.unlock()
	if s.ptr == nil {
		return sig, errClosed(op, "signer "+s.gone)
	}
	r := C.tessera_signer_sign(s.ptr, bytesPtr(message), C.size_t(len(message)), arrayPtr(sig[:]))
	runtime.KeepAlive(message)
	runtime.KeepAlive(s)
	if r != C.TESSERA_OK {
		return Signature{}, s.callbackError(&Error{Code: Code(r), Op: op})
	}
	return sig, nil
}

// SetHardwareReport has the signer name a hardware attestation report in
// every evidence it signs from now on: report is called at each
// connection, before the evidence is signed (see HardwareReportFunc); nil
// removes it. The agent or runtime that takes the signer over keeps it.
func (s *Signer) SetHardwareReport(report HardwareReportFunc) error {
	const op = "Signer.SetHardwareReport"
	if err := s.g.lock(op); err != nil {
		return err
	}
	defer s.g.unlock()
	if s.ptr == nil {
		return errClosed(op, "signer "+s.gone)
	}
	var h cgo.Handle
	if report != nil {
		st := &hardwareReportState{fn: report}
		st.owner.Store(s.g)
		h = cgo.NewHandle(st)
	}
	r := C.tessera_go_signer_set_hardware_report(s.ptr, C.uintptr_t(h))
	runtime.KeepAlive(s)
	if err := check(r, op); err != nil {
		if h != 0 {
			h.Delete()
		}
		return err
	}
	// The library no longer calls the one set before.
	if s.hs.hw != 0 {
		s.hs.hw.Delete()
	}
	s.hs.hw = h
	return nil
}

// callbackError adds the KeyStore's own error to e.
func (s *Signer) callbackError(e *Error) error {
	if s.state != nil {
		if cause := s.state.takeErr(); cause != nil {
			e.Detail = cause.Error()
		}
	}
	return e
}

// signerHandles are the cgo handles of a signer's callbacks (each 0 when
// it has none), which go with it to the agent or runtime that takes it
// over, and are deleted when that is freed.
type signerHandles struct {
	key, hw cgo.Handle
}

// delete deletes the handles (each once).
func (hs *signerHandles) delete() {
	for _, h := range []*cgo.Handle{&hs.key, &hs.hw} {
		if *h != 0 {
			h.Delete()
			*h = 0
		}
	}
}

// take hands the signer to an agent or runtime, which frees it: after it
// the Signer is gone whether that call succeeds or not, as the C library
// takes a signer over whatever it returns. The handles of its callbacks
// (a KeyStore's, a hardware report function's) go with it.
func (s *Signer) take(op string, owner *callGuard) (*C.tessera_signer, *keyStoreState, signerHandles, error) {
	if s == nil {
		return nil, nil, signerHandles{}, &Error{Code: CodeNullArgument, Op: op, Detail: "no signer"}
	}
	if err := s.g.lock(op); err != nil {
		return nil, nil, signerHandles{}, err
	}
	defer s.g.unlock()
	if s.ptr == nil {
		return nil, nil, signerHandles{}, errClosed(op, "signer "+s.gone)
	}
	ptr, state, hs := s.ptr, s.state, s.hs
	if state != nil {
		state.owner.Store(owner)
	}
	if hs.hw != 0 {
		hs.hw.Value().(*hardwareReportState).owner.Store(owner)
	}
	s.ptr, s.state, s.hs = nil, nil, signerHandles{}
	s.gone = "taken by " + op
	runtime.SetFinalizer(s, nil)
	return ptr, state, hs, nil
}

// Close frees the signer. A signer taken over by an agent or runtime is
// theirs to free; Close on it, or a second Close, does nothing.
func (s *Signer) Close() error {
	if err := s.g.lock("Signer.Close"); err != nil {
		return err
	}
	defer s.g.unlock()
	s.free()
	return nil
}

func (s *Signer) free() {
	if s.ptr != nil {
		C.tessera_signer_free(s.ptr)
		s.ptr = nil
		s.gone = "closed"
	}
	s.hs.delete()
	runtime.SetFinalizer(s, nil)
}

// finalize frees a signer nobody closed. It is unreachable, so no call on
// it runs.
func (s *Signer) finalize() {
	if s.ptr != nil {
		finalized.signers.Add(1)
	}
	s.free()
}

// finalized counts handles their finalizers freed, for the GC tests.
var finalized struct {
	signers, agents, dispatchers, verifiers, runtimes atomic.Int64
}
