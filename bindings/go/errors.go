package tessera

/*
#include <tessera.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// Code is a result code from the code space every Tessera binding shares
// (docs/CODES.md): 0 is success, anything else a failure whose range says
// who is at fault ([Code.Class]). A code this version does not name is
// still an error of its range.
type Code uint32

// String returns the code's name ("verify_bad_signature"), or "code N" for
// a code this version does not name.
func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	if c >= CodeKernelBase && c < CodeKernelBase+10000 {
		return "kernel_rejected"
	}
	return fmt.Sprintf("code %d", uint32(c))
}

// Text returns the library's words for the code: its name and meaning
// ("verify_bad_signature: the signature does not verify").
func (c Code) Text() string {
	var buf [256]C.uint8_t
	var n C.size_t
	if C.tessera_result_text(C.tessera_result(c), &buf[0], C.size_t(len(buf)), &n) != C.TESSERA_OK {
		return c.String()
	}
	return C.GoStringN((*C.char)(unsafe.Pointer(&buf[0])), C.int(n))
}

// KernelRule returns the kernel rule a kernel-rejection code names
// (code - 10000), and whether c is one.
func (c Code) KernelRule() (uint32, bool) {
	if c >= CodeKernelBase && c < CodeKernelBase+10000 {
		return uint32(c - CodeKernelBase), true
	}
	return 0, false
}

// Class returns the range of the code space c falls in.
func (c Code) Class() Class {
	switch {
	case c == 0:
		return ClassNone
	case c < 100:
		return ClassCall
	case c < 200:
		return ClassMisuse
	case c < 300:
		return ClassConfig
	case c < 400:
		return ClassStore
	case c < 500:
		return ClassVerify
	case c < 600:
		return ClassVulkan
	case c >= 1000 && c < 1100:
		return ClassPeer
	case c >= 2000 && c < 2100:
		return ClassJobFailed
	case c >= 2100 && c < 2200:
		return ClassDispatch
	case c >= 10000 && c < 20000:
		return ClassKernelRejected
	}
	return ClassUnknown
}

// Class is a range of the code space (docs/CODES.md). It is an error value
// only to be the target of errors.Is: errors.Is(err, tessera.ClassPeer)
// holds for any [*Error] whose code is in 1000–1099.
type Class uint8

// The ranges of the code space.
const (
	// ClassNone is the range of code 0, success.
	ClassNone Class = iota
	// ClassCall (1–99): call status: back-pressure, arguments, the call boundary.
	ClassCall
	// ClassMisuse (100–199): the call is not allowed in the object's state.
	ClassMisuse
	// ClassConfig (200–299): configuration, keys and signers.
	ClassConfig
	// ClassStore (300–399): the result store.
	ClassStore
	// ClassVerify (400–499): verification of evidence, receipts and proofs.
	ClassVerify
	// ClassVulkan (500–599): Vulkan set-up.
	ClassVulkan
	// ClassPeer (1000–1099): the coordinator broke the protocol.
	ClassPeer
	// ClassJobFailed (2000–2099): a job failed (2000 + the wire fail reason).
	ClassJobFailed
	// ClassDispatch (2100–2199): the dispatcher could not run a job.
	ClassDispatch
	// ClassKernelRejected (10000–19999): a kernel was rejected (10000 + the rule).
	ClassKernelRejected
	// ClassUnknown is any other number.
	ClassUnknown
)

var classNames = [...]string{
	ClassNone:           "ok",
	ClassCall:           "call status",
	ClassMisuse:         "API misuse",
	ClassConfig:         "configuration, keys and signers",
	ClassStore:          "result store",
	ClassVerify:         "verification",
	ClassVulkan:         "Vulkan set-up",
	ClassPeer:           "the peer broke the protocol",
	ClassJobFailed:      "job failed",
	ClassDispatch:       "the dispatcher could not run a job",
	ClassKernelRejected: "kernel rejected",
	ClassUnknown:        "unknown code",
}

// String returns what the range holds.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown code"
}

// Error makes a Class usable as the target of errors.Is.
func (c Class) Error() string { return "tessera: " + c.String() }

// Error is a failure reported by the library, or found by the binding
// before it called the library.
type Error struct {
	// Code is the result code (never CodeOK).
	Code Code
	// Op names the call that failed ("VerifyReceipt", "Agent.HandleInput").
	Op string
	// Detail is the library's words about this failure when it gave any
	// (which configuration field, which rule a kernel broke), else empty.
	Detail string
}

// Error returns "tessera: Op: name: meaning: detail".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("tessera: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Code.Text())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Is reports whether target is an *Error with the same code (the sentinel
// errors such as ErrBadSignature) or the Class of e's code.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case *Error:
		return t.Code == e.Code
	case Class:
		return e.Code.Class() == t
	}
	return false
}

// CodeOf returns the code of the first *Error in err's chain: CodeOK for
// nil, and ok false for an error that carries no code.
func CodeOf(err error) (code Code, ok bool) {
	if err == nil {
		return CodeOK, true
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code, true
	}
	return 0, false
}

// check turns a result code into an error: nil for TESSERA_OK.
func check(r C.tessera_result, op string) error {
	if r == C.TESSERA_OK {
		return nil
	}
	return &Error{Code: Code(r), Op: op}
}

// checkDetail is check with the library's words from an error buffer.
func checkDetail(r C.tessera_result, op string, detail []C.char) error {
	if r == C.TESSERA_OK {
		return nil
	}
	return &Error{Code: Code(r), Op: op, Detail: cText(detail)}
}

// errClosed is the error of a call on a closed handle.
func errClosed(op, what string) error {
	return &Error{Code: CodeStopped, Op: op, Detail: what}
}

// errArgument is an argument the binding refuses before calling the
// library (the library would refuse it with the same code).
func errArgument(op, detail string) error {
	return &Error{Code: CodeInvalidArgument, Op: op, Detail: detail}
}

// cText returns the NUL-terminated text at the start of buf.
func cText(buf []C.char) string {
	for i, c := range buf {
		if c == 0 {
			return C.GoStringN(&buf[0], C.int(i))
		}
	}
	if len(buf) == 0 {
		return ""
	}
	return C.GoStringN(&buf[0], C.int(len(buf)))
}
