package tessera

/*
#include <stdlib.h>
#include <tessera.h>
*/
import "C"

import (
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// callGuard serializes the calls on one handle, as the C library needs for
// a handle that is not const (one thread at a time), and refuses a call
// that a callback of a running call on the same handle makes, as the
// library does: that callback runs on the goroutine holding the lock, so
// waiting would never end.
type callGuard struct {
	mu sync.Mutex
	// callbacks counts the Go callbacks of a call on this handle that run
	// now (a KeyStore signing while the agent handles input).
	callbacks atomic.Int32
}

// lock takes the handle for one call, waiting for other goroutines' calls.
// While a callback of a call on this handle runs, a call that finds the
// handle taken is refused with CodeInUse instead of waiting: it is the
// callback's own (which would wait forever), or another goroutine's that
// overlapped with it, which may retry.
func (g *callGuard) lock(op string) error {
	if g.mu.TryLock() {
		return nil
	}
	if g.callbacks.Load() > 0 {
		return &Error{Code: CodeInUse, Op: op, Detail: "called while a callback of a call on this handle runs"}
	}
	g.mu.Lock()
	return nil
}

// tryLock takes the handle for one call or refuses it with CodeInUse when
// another call holds it (the runtime's rule: it is stepped by one loop).
func (g *callGuard) tryLock(op string) error {
	if g.mu.TryLock() {
		return nil
	}
	return &Error{Code: CodeInUse, Op: op, Detail: "another call on this runtime runs now"}
}

func (g *callGuard) unlock() { g.mu.Unlock() }

// enterCallback marks a callback of a call on this handle as running; the
// returned function marks its end.
func (g *callGuard) enterCallback() func() {
	g.callbacks.Add(1)
	return func() { g.callbacks.Add(-1) }
}

// emptyBytes stands in for the bytes of an empty slice: the library gets a
// valid pointer with length 0, and answers for the empty input itself.
var emptyBytes [1]byte

// bytesPtr returns a pointer to b's bytes for the duration of one C call.
//
// Safe: cgo keeps Go memory passed as a call argument alive and in place
// for the call, the library copies what it keeps, and b holds no Go
// pointers.
func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return (*C.uint8_t)(unsafe.Pointer(&emptyBytes[0]))
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// arrayPtr returns a pointer to the first byte of an array for one C call
// (same reasoning as bytesPtr).
func arrayPtr(b []byte) *C.uint8_t {
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// cBool converts a Go bool to the C bool the library reads (a byte holding
// exactly 0 or 1).
func cBool(b bool) C.bool {
	if b {
		return C.bool(true)
	}
	return C.bool(false)
}

// cString returns a C copy of s (NULL for ""), to be freed with freeString.
func cString(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

// cStrings holds C strings made for one call and frees them together.
type cStrings []*C.char

// add returns a C copy of s (NULL for "") freed by free.
func (cs *cStrings) add(s string) *C.char {
	p := cString(s)
	if p != nil {
		*cs = append(*cs, p)
	}
	return p
}

func (cs *cStrings) free() {
	for _, p := range *cs {
		C.free(unsafe.Pointer(p))
	}
	*cs = nil
}

// noNUL refuses a string holding a NUL byte, which no C string can carry
// (the library would see it cut short).
func noNUL(op, field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return errArgument(op, field+" holds a NUL byte")
	}
	return nil
}
