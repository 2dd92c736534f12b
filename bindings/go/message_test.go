package tessera_test

// Protocol messages as JSON over the shared wire vectors: every valid
// frame decodes to its readable form, and encoding that form gives the
// frame back byte for byte; every invalid frame fails with the wire error
// the agent would send for it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

// wireErrors maps the wire vectors' expect_error names to the error the
// decoder returns. A frame shorter or longer than its header says is
// malformed as a whole frame.
var wireErrors = map[string]*tessera.Error{
	"BadMagic":           tessera.ErrPeerBadMagic,
	"UnsupportedVersion": tessera.ErrPeerUnsupportedVersion,
	"FrameTooLarge":      tessera.ErrPeerFrameTooLarge,
	"UnknownType":        tessera.ErrPeerUnknownMessageType,
	"Incomplete":         tessera.ErrPeerMalformed,
	"Malformed":          tessera.ErrPeerMalformed,
}

func TestWireVectors(t *testing.T) {
	var vectors []wireVector
	loadVectors(t, "wire.json", &vectors)
	valid, invalid := 0, 0
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			frame := unhex(t, v.Hex)
			m, err := tessera.DecodeMessage(frame)
			if v.ExpectError != "" {
				invalid++
				want := wireErrors[v.ExpectError]
				if want == nil {
					t.Fatalf("unknown expect_error %q", v.ExpectError)
				}
				wantCode(t, err, want)
				if !errors.Is(err, tessera.ClassPeer) {
					t.Errorf("not the peer's fault: %v", err)
				}
				return
			}
			valid++
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != v.Type {
				t.Errorf("type %q, want %q", m.Type, v.Type)
			}
			if !reflect.DeepEqual(m.Fields, v.Readable) {
				t.Errorf("fields differ from the readable form:\n got %v\nwant %v", m.Fields, v.Readable)
			}
			encoded, err := tessera.EncodeMessage(&tessera.Message{Type: v.Type, Fields: v.Readable})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(encoded, frame) {
				t.Errorf("encoded %x, want %x", encoded, frame)
			}
			// The decoder's own text encodes back too.
			text, err := tessera.DecodeMessageJSON(frame)
			if err != nil {
				t.Fatal(err)
			}
			again, err := tessera.EncodeMessageJSON(text)
			if err != nil || !bytes.Equal(again, frame) {
				t.Errorf("JSON round trip: %x %v", again, err)
			}
		})
	}
	if valid == 0 || invalid == 0 {
		t.Fatalf("%d valid and %d invalid wire vectors", valid, invalid)
	}
}

func TestEncodeMessageErrors(t *testing.T) {
	_, err := tessera.EncodeMessageJSON([]byte(`{"type":"Hello","fields":{"min_version":"one"}}`))
	wantCode(t, err, tessera.ErrInvalidArgument)
	if err.(*tessera.Error).Detail == "" {
		t.Errorf("no words: %v", err)
	}
	_, err = tessera.EncodeMessageJSON([]byte(`{"type":"NoSuchMessage","fields":{}}`))
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.EncodeMessageJSON([]byte(`not json`))
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.EncodeMessageJSON([]byte("{\x00}"))
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.EncodeMessage(nil)
	wantCode(t, err, tessera.ErrNullArgument)
	_, err = tessera.EncodeMessage(&tessera.Message{Type: "Ready", Fields: map[string]any{"x": make(chan int)}})
	wantCode(t, err, tessera.ErrInvalidArgument)

	// Fields left out for Ready and Drain.
	frame, err := tessera.EncodeMessage(&tessera.Message{Type: "Ready"})
	if err != nil || !bytes.Equal(frame, wireFrame(t, "ready")) {
		t.Errorf("Ready: %x %v", frame, err)
	}
	// A body too large for one frame.
	big := strings.Repeat("ab", tessera.MaxFrame)
	_, err = tessera.EncodeMessageJSON([]byte(`{"type":"Evidence","fields":{"bytes":"` + big + `"}}`))
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.DecodeMessage(nil)
	wantCode(t, err, tessera.ErrPeerMalformed)
	var m tessera.Message
	if err := json.Unmarshal([]byte(`{"type":"Ready"}`), &m); err != nil || m.Type != "Ready" {
		t.Fatal(err)
	}
}
