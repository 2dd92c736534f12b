package tessera

/*
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <tessera.h>

static uintptr_t tessera_go_thread(void) { return (uintptr_t)pthread_self(); }
*/
import "C"

import (
	"strings"
	"sync"
	"unsafe"
)

// threadSet holds the OS threads that run a callback now. A goroutine in a
// cgo callback stays on the thread of that callback until it returns, so
// the thread tells whether a call comes from inside a callback.
type threadSet struct {
	mu sync.Mutex
	m  map[uintptr]int
}

// enter marks the current thread as running a callback; the returned
// function marks its end.
func (s *threadSet) enter() func() {
	t := currentThread()
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[uintptr]int)
	}
	s.m[t]++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.m[t]--; s.m[t] == 0 {
			delete(s.m, t)
		}
		s.mu.Unlock()
	}
}

// here reports whether the current thread runs a callback of the set now.
func (s *threadSet) here() bool {
	t := currentThread()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[t] > 0
}

// currentThread identifies the OS thread the calling goroutine runs on
// (meaningful inside a callback, where the goroutine cannot move).
func currentThread() uintptr {
	return uintptr(C.tessera_go_thread())
}

// logThreads holds the threads running the log callback now (log.go).
var logThreads threadSet

// callGuard serializes the calls on one handle, as the C library needs for
// a handle that is not const (one thread at a time), and refuses a call
// that a callback made while a call on the same handle runs it, as the
// library does: that callback runs on the thread of the waiting call, so
// waiting would never end.
type callGuard struct {
	mu sync.Mutex
	// callbacks holds the threads running a callback of a call on this
	// handle (a KeyStore signing while the agent handles input).
	callbacks threadSet
}

// inCallback reports whether the caller is inside a callback of this
// handle, or inside the log callback (whose lines may come from a call on
// this handle, and which blocks every other thread's log line while it
// runs: waiting for a call that logs would never end either).
func (g *callGuard) inCallback() bool {
	return g.callbacks.here() || logThreads.here()
}

// lock takes the handle for one call, waiting for other goroutines' calls,
// or refuses it with CodeInUse when the handle is taken and the caller is
// a callback (see inCallback).
func (g *callGuard) lock(op string) error {
	if g.mu.TryLock() {
		return nil
	}
	if g.inCallback() {
		return &Error{Code: CodeInUse, Op: op, Detail: "called from a callback while a call on this handle runs"}
	}
	g.mu.Lock()
	return nil
}

// tryLock takes the handle for one call or refuses it with CodeInUse when
// another call holds it (the runtime's rule: one loop steps it, or its own
// thread runs it).
func (g *callGuard) tryLock(op string) error {
	if g.mu.TryLock() {
		return nil
	}
	return &Error{Code: CodeInUse, Op: op, Detail: "another call on this runtime runs now"}
}

func (g *callGuard) unlock() { g.mu.Unlock() }

// enterCallback marks a callback of a call on this handle as running on
// the current thread; the returned function marks its end.
func (g *callGuard) enterCallback() func() {
	return g.callbacks.enter()
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
