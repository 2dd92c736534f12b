package tessera

// The Go side of every callback the library makes. Each C trampoline (in
// the preambles of signer.go, log.go, runtime.go) passes its userdata, a
// runtime/cgo handle, as an integer; the state is looked up through it, so
// the library never holds a Go pointer. Each recovers a panic: a panic must
// not unwind through the library's frames.

/*
#include <stdint.h>
#include <tessera.h>
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"unsafe"
)

// panicError is a panic recovered in a callback.
func panicError(where string, v any) error {
	return fmt.Errorf("%s panicked: %v", where, v)
}

//export tesseraGoKeyStorePublicKey
func tesseraGoKeyStorePublicKey(handle C.uintptr_t, out *C.uint8_t) (r C.tessera_result) {
	st := cgo.Handle(handle).Value().(*keyStoreState)
	defer func() {
		if v := recover(); v != nil {
			st.setErr(panicError("KeyStore.PublicKey", v))
			r = C.TESSERA_SIGNER_FAILED
		}
	}()
	pk, err := st.ks.PublicKey()
	if err != nil {
		st.setErr(err)
		return callbackResult(err, C.TESSERA_SIGNER_FAILED)
	}
	// Safe: the library passes 32 writable bytes, valid during the call.
	copy(unsafe.Slice((*byte)(unsafe.Pointer(out)), 32), pk[:])
	return C.TESSERA_OK
}

//export tesseraGoKeyStoreSign
func tesseraGoKeyStoreSign(handle C.uintptr_t, message *C.uint8_t, n C.size_t, out *C.uint8_t) (r C.tessera_result) {
	st := cgo.Handle(handle).Value().(*keyStoreState)
	if g := st.owner.Load(); g != nil {
		defer g.enterCallback()()
	}
	defer func() {
		if v := recover(); v != nil {
			st.setErr(panicError("KeyStore.Sign", v))
			r = C.TESSERA_SIGNER_FAILED
		}
	}()
	// A Go copy: the KeyStore may keep the message.
	msg := C.GoBytes(unsafe.Pointer(message), C.int(n))
	sig, err := st.ks.Sign(msg)
	if err != nil {
		st.setErr(err)
		return callbackResult(err, C.TESSERA_SIGNER_FAILED)
	}
	// Safe: the library passes 64 writable bytes, valid during the call.
	copy(unsafe.Slice((*byte)(unsafe.Pointer(out)), 64), sig[:])
	return C.TESSERA_OK
}

//export tesseraGoHardwareReport
func tesseraGoHardwareReport(handle C.uintptr_t, nonce *C.uint8_t, kind *C.uint16_t, hash *C.uint8_t) (r C.tessera_result) {
	st := cgo.Handle(handle).Value().(*hardwareReportState)
	if g := st.owner.Load(); g != nil {
		defer g.enterCallback()()
	}
	defer func() {
		if v := recover(); v != nil {
			// No report: the evidence stands on the device key alone.
			r = C.TESSERA_SIGNER_FAILED
		}
	}()
	var n [32]byte
	// Safe: the library passes 32 readable bytes, valid during the call.
	copy(n[:], unsafe.Slice((*byte)(unsafe.Pointer(nonce)), 32))
	k, h, err := st.fn(n)
	if err != nil {
		return callbackResult(err, C.TESSERA_SIGNER_FAILED)
	}
	// Safe: the library passes a writable kind and 32 writable bytes,
	// valid during the call.
	*kind = C.uint16_t(k)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(hash)), 32), h[:])
	return C.TESSERA_OK
}
