package tessera

/*
#include <stdlib.h>
#include <tessera.h>
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"runtime"
	"unsafe"
)

// Message is a protocol message in its JSON form: Type is the message
// type's name in docs/PROTOCOL.md ("Hello", "JobAssign") and Fields the
// readable form of core/tests/vectors/wire.json (integers as numbers, byte
// strings as lowercase hex, enums by variant name). Decoded numbers are
// json.Number, so 64-bit values stay exact.
type Message struct {
	// Type is the message type's name.
	Type string `json:"type"`
	// Fields holds the message's fields by their protocol names.
	Fields map[string]any `json:"fields,omitempty"`
}

// DecodeMessageJSON decodes one whole frame into its JSON text,
// {"type": ..., "fields": {...}}. A frame that does not decode gets the
// wire error the agent would send for it, as an error of ClassPeer
// (ErrPeerBadMagic, ErrPeerUnsupportedVersion, ErrPeerFrameTooLarge,
// ErrPeerUnknownMessageType or ErrPeerMalformed).
func DecodeMessageJSON(frame []byte) ([]byte, error) {
	const op = "DecodeMessageJSON"
	var need C.size_t
	r := C.tessera_message_decode(bytesPtr(frame), C.size_t(len(frame)), nil, 0, &need)
	runtime.KeepAlive(frame)
	if r != C.TESSERA_BUFFER_TOO_SMALL {
		if r == C.TESSERA_OK {
			// No JSON form is empty: the query must ask for room.
			return nil, &Error{Code: CodeBufferTooSmall, Op: op, Detail: "no length reported"}
		}
		return nil, check(r, op)
	}
	buf := make([]C.char, need)
	var n C.size_t
	r = C.tessera_message_decode(bytesPtr(frame), C.size_t(len(frame)), &buf[0], C.size_t(len(buf)), &n)
	runtime.KeepAlive(frame)
	if err := check(r, op); err != nil {
		return nil, err
	}
	return C.GoBytes(unsafe.Pointer(&buf[0]), C.int(n)), nil
}

// DecodeMessage decodes one whole frame (errors as DecodeMessageJSON).
func DecodeMessage(frame []byte) (*Message, error) {
	text, err := DecodeMessageJSON(frame)
	if err != nil {
		return nil, err
	}
	var m Message
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Op: "DecodeMessage", Detail: err.Error()}
	}
	if m.Fields == nil {
		m.Fields = map[string]any{}
	}
	return &m, nil
}

// EncodeMessageJSON encodes a message from its JSON text into a frame
// ("fields" may be left out for Ready and Drain). What is wrong with the
// JSON is ErrInvalidArgument, with the field's path and what it must be in
// the Detail.
func EncodeMessageJSON(text []byte) ([]byte, error) {
	const op = "EncodeMessageJSON"
	if bytes.IndexByte(text, 0) >= 0 {
		return nil, errArgument(op, "the JSON holds a NUL byte")
	}
	ctext := C.CString(string(text))
	defer C.free(unsafe.Pointer(ctext))
	frame := make([]byte, MaxFrame)
	var n C.size_t
	var why [512]C.char
	r := C.tessera_message_encode(ctext, bytesPtr(frame), C.size_t(len(frame)), &n, &why[0], C.size_t(len(why)))
	runtime.KeepAlive(frame)
	if err := checkDetail(r, op, why[:]); err != nil {
		return nil, err
	}
	return frame[:n:n], nil
}

// EncodeMessage encodes m into a frame (errors as EncodeMessageJSON).
func EncodeMessage(m *Message) ([]byte, error) {
	if m == nil {
		return nil, &Error{Code: CodeNullArgument, Op: "EncodeMessage", Detail: "no message"}
	}
	text, err := json.Marshal(m)
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Op: "EncodeMessage", Detail: err.Error()}
	}
	return EncodeMessageJSON(text)
}
