package tessera_test

// The sans-IO agent through the Go API: a session up to an accepted offer
// with frames from the shared wire vectors, calls in the wrong order, a
// KeyStore signer (busy, failing, panicking, calling back in),
// configuration errors, and a job's data: an 8 KiB input chunk in several
// EventJobData pieces, outputs written into the host's buffer, a chunk
// that fails its digest.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

type wireVector struct {
	Name        string         `json:"name"`
	Type        string         `json:"type"`
	TypeCode    int            `json:"type_code"`
	Readable    map[string]any `json:"readable"`
	Hex         string         `json:"hex"`
	ExpectError string         `json:"expect_error"`
}

// wireFrame returns the bytes of the wire vector called name.
func wireFrame(t testing.TB, name string) []byte {
	t.Helper()
	var vectors []wireVector
	loadVectors(t, "wire.json", &vectors)
	for _, v := range vectors {
		if v.Name == name {
			return unhex(t, v.Hex)
		}
	}
	t.Fatalf("no wire vector %q", name)
	return nil
}

var testSeed = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}

func testDeviceConfig() tessera.AgentConfig {
	c := tessera.DefaultAgentConfig()
	c.Device.Name = "Go test GPU"
	c.Device.Type = tessera.DeviceDiscreteGPU
	c.Device.Features = 0xFFFFFFFF
	c.Device.DeviceLocalBytes = 8 << 30
	c.Device.HostVisibleBytes = 8 << 30
	c.Device.MaxStorageBufferRange = 1 << 30
	c.BootID[0] = 7
	return c
}

func seedSigner(t testing.TB) *tessera.Signer {
	t.Helper()
	s, err := tessera.NewSignerFromSeed(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// element is a stand-in secure element: a built-in key behind a KeyStore,
// which can be made busy, failing or panicking, and can call back into an
// agent while it signs.
type element struct {
	key        *tessera.Signer
	mu         sync.Mutex
	busy       bool
	fail       error
	panics     bool
	signatures int
	reenter    func()
}

func (e *element) PublicKey() (tessera.PublicKey, error) { return e.key.PublicKey() }

func (e *element) Sign(msg []byte) (tessera.Signature, error) {
	e.mu.Lock()
	busy, fail, panics, reenter := e.busy, e.fail, e.panics, e.reenter
	e.mu.Unlock()
	if reenter != nil {
		reenter()
	}
	switch {
	case panics:
		panic("the element fell over")
	case busy:
		return tessera.Signature{}, fmt.Errorf("element busy: %w", tessera.ErrSignerUnavailable)
	case fail != nil:
		return tessera.Signature{}, fail
	}
	e.mu.Lock()
	e.signatures++
	e.mu.Unlock()
	return e.key.Sign(msg)
}

func (e *element) set(f func(e *element)) {
	e.mu.Lock()
	f(e)
	e.mu.Unlock()
}

// drainTransmit sends nothing anywhere: it polls every queued frame and
// returns the message type of the last one (0 for none).
func drainTransmit(t *testing.T, a *tessera.Agent, now uint64) byte {
	t.Helper()
	buf := make([]byte, tessera.MaxFrame)
	var last byte
	for {
		n, err := a.PollTransmit(now, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return last
		}
		if n < 8 || buf[0] != 'T' || buf[1] != 'S' {
			t.Fatalf("not a frame: %x", buf[:n])
		}
		last = buf[3]
	}
}

func feed(t *testing.T, a *tessera.Agent, now uint64, frame []byte) {
	t.Helper()
	n, err := a.HandleInput(now, frame)
	if err != nil || n != len(frame) {
		t.Fatalf("HandleInput: took %d of %d: %v", n, len(frame), err)
	}
}

func TestSignerErrors(t *testing.T) {
	_, err := tessera.NewSignerFromPKCS8([]byte("nonsense"))
	wantCode(t, err, tessera.ErrKeyRejected)
	_, err = tessera.NewSignerFromPKCS8(nil)
	if !errors.Is(err, tessera.ClassCall) && !errors.Is(err, tessera.ErrKeyRejected) {
		t.Errorf("empty PKCS#8: %v", err)
	}
	_, err = tessera.NewSignerFromKeyStore(nil)
	wantCode(t, err, tessera.ErrNullArgument)

	s := seedSigner(t)
	want, _ := s.PublicKey()
	e := &element{key: s}
	// A KeyStore whose public key fails: its error, with its code.
	failing := &failingKeyStore{err: fmt.Errorf("no element: %w", tessera.ErrSignerFailed)}
	_, err = tessera.NewSignerFromKeyStore(failing)
	wantCode(t, err, tessera.ErrSignerFailed)
	if !strings.Contains(err.Error(), "no element") {
		t.Errorf("the KeyStore's words are lost: %v", err)
	}
	_, err = tessera.NewSignerFromKeyStore(&failingKeyStore{panics: true})
	wantCode(t, err, tessera.ErrSignerFailed)
	if !strings.Contains(err.Error(), "panicked") {
		t.Errorf("the panic is not reported: %v", err)
	}

	c, err := tessera.NewSignerFromKeyStore(e)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gcStress()
	if pk, err := c.PublicKey(); err != nil || pk != want {
		t.Fatalf("KeyStore signer's key %v %v", pk, err)
	}
	e.set(func(e *element) { e.busy = true })
	_, err = c.Sign([]byte("m"))
	wantCode(t, err, tessera.ErrSignerUnavailable)
	e.set(func(e *element) { e.busy = false; e.fail = errors.New("broken") })
	_, err = c.Sign([]byte("m"))
	wantCode(t, err, tessera.ErrSignerFailed)
	if !strings.Contains(err.Error(), "broken") {
		t.Errorf("the KeyStore's words are lost: %v", err)
	}
	e.set(func(e *element) { e.fail = nil; e.panics = true })
	_, err = c.Sign([]byte("m"))
	wantCode(t, err, tessera.ErrSignerFailed)
	e.set(func(e *element) { e.panics = false })
	sig, err := c.Sign([]byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := s.Sign([]byte("m"))
	if sig != direct || e.signatures != 1 {
		t.Errorf("signature through the KeyStore differs (%d signatures)", e.signatures)
	}

	// A KeyStore calling its own signer while it signs: refused, not a
	// deadlock.
	var inner error
	e.set(func(e *element) { e.reenter = func() { _, inner = c.PublicKey() } })
	if _, err := c.Sign([]byte("m")); err != nil {
		t.Fatal(err)
	}
	wantCode(t, inner, tessera.ErrInUse)
	e.set(func(e *element) { e.reenter = nil })

	// Closed handles.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("a second Close:", err)
	}
	_, err = c.Sign([]byte("m"))
	wantCode(t, err, tessera.ErrStopped)
	_, err = c.PublicKey()
	wantCode(t, err, tessera.ErrStopped)
	s.Close()
}

type failingKeyStore struct {
	err    error
	panics bool
}

func (f *failingKeyStore) PublicKey() (tessera.PublicKey, error) {
	if f.panics {
		panic("no key")
	}
	return tessera.PublicKey{}, f.err
}

func (f *failingKeyStore) Sign([]byte) (tessera.Signature, error) {
	return tessera.Signature{}, f.err
}

func TestGeneratedKey(t *testing.T) {
	doc, err := tessera.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(doc) != tessera.KeyPKCS8Len {
		t.Fatalf("%d bytes", len(doc))
	}
	pk, err := tessera.PublicKeyFromPKCS8(doc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tessera.NewSignerFromPKCS8(doc)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := s.PublicKey(); got != pk {
		t.Errorf("signer key %v, want %v", got, pk)
	}
	other, _ := tessera.GenerateKey()
	if string(other) == string(doc) {
		t.Error("two generated keys are the same")
	}
	doc[0] ^= 0xFF
	_, err = tessera.PublicKeyFromPKCS8(doc)
	wantCode(t, err, tessera.ErrKeyRejected)
	_, err = tessera.PublicKeyFromPKCS8(nil)
	wantCode(t, err, tessera.ErrKeyRejected)
}

func TestAgentConfigErrors(t *testing.T) {
	c := testDeviceConfig()
	c.Policy.MaxConcurrent = 0
	_, err := tessera.NewAgent(c, seedSigner(t), nil)
	wantCode(t, err, tessera.ErrInvalidConfig)
	if !strings.Contains(err.Error(), "policy.max_concurrent") {
		t.Errorf("the field is not named: %v", err)
	}
	c = testDeviceConfig()
	c.Device.Name = strings.Repeat("x", 80)
	_, err = tessera.NewAgent(c, seedSigner(t), nil)
	wantCode(t, err, tessera.ErrInvalidConfig)
	if !strings.Contains(err.Error(), "device.name") {
		t.Errorf("the field is not named: %v", err)
	}
	c.Device.Name = "a\x00b"
	taken := seedSigner(t)
	_, err = tessera.NewAgent(c, taken, nil)
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = taken.PublicKey()
	wantCode(t, err, tessera.ErrStopped) // taken over all the same
	c = testDeviceConfig()
	c.Device.Type = 99
	_, err = tessera.NewAgent(c, seedSigner(t), nil)
	wantCode(t, err, tessera.ErrInvalidConfig)
	_, err = tessera.NewAgent(testDeviceConfig(), nil, nil)
	wantCode(t, err, tessera.ErrNullArgument)

	// A signer is taken over whatever NewAgent returns.
	s := seedSigner(t)
	c.Device.Type = 99
	if _, err := tessera.NewAgent(c, s, nil); err == nil {
		t.Fatal("a bad configuration was taken")
	}
	_, err = s.PublicKey()
	wantCode(t, err, tessera.ErrStopped)
	_, err = tessera.NewAgent(testDeviceConfig(), s, nil)
	wantCode(t, err, tessera.ErrStopped)
}

func TestAgentSession(t *testing.T) {
	key := seedSigner(t)
	defer key.Close()
	e := &element{key: key}
	signer, err := tessera.NewSignerFromKeyStore(e)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tessera.NewAgent(testDeviceConfig(), signer, &tessera.ChainState{NextSequence: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var now uint64 = 1_000_000
	gcStress()

	if s, err := a.State(); err != nil || s != tessera.ConnDisconnected {
		t.Fatalf("state %v %v", s, err)
	}
	pk, _ := key.PublicKey()
	if id, err := a.KeyID(); err != nil || id != pk.KeyID() {
		t.Fatalf("key id %v %v", id, err)
	}

	// Calls in the wrong order.
	n, err := a.HandleInput(now, []byte{1})
	wantCode(t, err, tessera.ErrNotConnected)
	if n != 0 {
		t.Errorf("took %d bytes", n)
	}
	if _, ok, err := a.PollEvent(); ok || err != nil {
		t.Errorf("an event before any session: %v", err)
	}
	if n, err := a.PollTransmit(now, make([]byte, 64)); n != 0 || err != nil {
		t.Errorf("a frame before any session: %d %v", n, err)
	}
	_, err = a.ReadInput(1, make([]byte, 64))
	wantCode(t, err, tessera.ErrNoInput)
	_, err = a.JobInfo(1)
	wantCode(t, err, tessera.ErrUnknownJob)
	err = a.FinishJob(now, 1, tessera.Usage{})
	wantCode(t, err, tessera.ErrUnknownJob)
	if !strings.Contains(err.Error(), "job 1") {
		t.Errorf("the agent's words are missing: %v", err)
	}
	if words, err := a.LastError(); err != nil || !strings.Contains(words, "job 1") {
		t.Errorf("LastError %q %v", words, err)
	}
	wantCode(t, a.ConfirmPersisted(now, 1), tessera.ErrUnknownJob)
	_, err = a.ResultRecord(1)
	wantCode(t, err, tessera.ErrUnknownJob)
	wantCode(t, a.RestoreResult(nil), tessera.ErrInvalidArgument)
	if err := a.RestoreResult([]byte{1, 2, 3}); err == nil {
		t.Error("a record of junk was restored")
	}
	_, err = a.JobLayout(1)
	wantCode(t, err, tessera.ErrUnknownJob)

	// Hello; no room for any of it.
	if err := a.Connect(now); err != nil {
		t.Fatal(err)
	}
	wantCode(t, a.Connect(now), tessera.ErrAlreadyConnected)
	_, err = a.PollTransmit(now, nil)
	wantCode(t, err, tessera.ErrBufferTooSmall)
	if last := drainTransmit(t, a, now); last != 1 {
		t.Fatalf("sent type %d, want Hello", last)
	}

	// Welcome: the element signs the evidence; while it signs, a call
	// into the agent is refused, not a deadlock.
	var inner error
	e.set(func(e *element) { e.reenter = func() { _, inner = a.State() } })
	feed(t, a, now, wireFrame(t, "welcome"))
	e.set(func(e *element) { e.reenter = nil })
	wantCode(t, inner, tessera.ErrInUse)
	if e.signatures != 1 {
		t.Fatalf("%d signatures", e.signatures)
	}
	if last := drainTransmit(t, a, now); last != 3 {
		t.Fatalf("sent type %d, want Evidence", last)
	}
	feed(t, a, now, wireFrame(t, "ready"))
	ev, ok, err := a.PollEvent()
	if err != nil || !ok || ev.Kind != tessera.EventReady {
		t.Fatalf("event %+v %v %v", ev, ok, err)
	}
	if _, ok, _ := a.PollEvent(); ok {
		t.Fatal("a second event")
	}
	if s, _ := a.State(); s != tessera.ConnReady {
		t.Fatalf("state %v", s)
	}

	// An offer the policy takes: held, not yet assigned.
	feed(t, a, now, wireFrame(t, "job_offer"))
	if last := drainTransmit(t, a, now); last != 0x11 {
		t.Fatalf("sent type %#x, want OfferAccept", last)
	}
	info, err := a.JobInfo(1)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != tessera.JobAccepted || info.Assigned || !info.HasDeadline || info.DeadlineMicros != now+30_000_000 {
		t.Errorf("job info %+v", info)
	}
	_, err = a.JobBuffer(1, 0)
	wantCode(t, err, tessera.ErrInvalidJobState)
	_, err = a.JobEntryPoint(1)
	wantCode(t, err, tessera.ErrInvalidJobState)
	_, err = a.JobPushConstants(1)
	wantCode(t, err, tessera.ErrInvalidJobState)
	_, err = a.JobSpecialization(1, 0)
	wantCode(t, err, tessera.ErrInvalidJobState)
	_, err = a.JobLayout(1)
	wantCode(t, err, tessera.ErrInvalidJobState)
	wantCode(t, a.FinishJob(now, 1, tessera.Usage{}), tessera.ErrInvalidJobState)
	wantCode(t, a.FailJob(now, 1, 0, 0, tessera.Usage{}), tessera.ErrInvalidArgument)
	wantCode(t, a.FailJob(now, 1, tessera.ReceiptHost, 0, tessera.Usage{}), tessera.ErrInvalidJobState)
	out := make([]byte, tessera.TransmitBuffer)
	_, _, err = a.SendOutput(now, 1, 0, []byte{1, 2, 3, 4}, out)
	wantCode(t, err, tessera.ErrInvalidJobState)
	_, _, err = a.SendOutput(now, 1, 300, []byte{1}, out)
	wantCode(t, err, tessera.ErrInvalidArgument)
	wantCode(t, a.ReportProgress(now, 1, 500), tessera.ErrInvalidJobState)
	wantCode(t, a.ReportProgress(now, 1, 70000), tessera.ErrInvalidArgument)
	if err := a.SetDeviceAvailable(now, false); err != nil {
		t.Fatal(err)
	}
	if err := a.SetDeviceAvailable(now, true); err != nil {
		t.Fatal(err)
	}

	// Timers.
	at, ok, err := a.PollTimeout()
	if err != nil || !ok || at <= now {
		t.Fatalf("timeout %d %v %v", at, ok, err)
	}
	if err := a.HandleTimeout(now); err != nil {
		t.Fatal(err)
	}

	// Bytes that are not Tessera end the session: the peer's fault.
	n, err = a.HandleInput(now, []byte("XX\x01\x01\x00\x00\x00\x00"))
	if !errors.Is(err, tessera.ClassPeer) || !errors.Is(err, tessera.ErrPeerBadMagic) || n > 8 {
		t.Fatalf("junk: %d %v", n, err)
	}
	drainTransmit(t, a, now)
	sawDisconnect := false
	for {
		ev, ok, err := a.PollEvent()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if ev.Kind == tessera.EventDisconnect {
			sawDisconnect = ev.Reason == tessera.DisconnectProtocolViolation
		}
	}
	if !sawDisconnect {
		t.Error("no disconnect for a protocol violation")
	}
	if err := a.Disconnected(now); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(now + 1); err != nil {
		t.Fatal(err)
	}
	drainTransmit(t, a, now+1)

	// A busy element: the evidence cannot be signed now.
	e.set(func(e *element) { e.busy = true })
	_, err = a.HandleInput(now+2, wireFrame(t, "welcome"))
	wantCode(t, err, tessera.ErrSignerUnavailable)
	e.set(func(e *element) { e.busy = false })

	chain, err := a.Chain()
	if err != nil || chain.NextSequence != 1 {
		t.Errorf("chain %+v %v", chain, err)
	}
	stats, err := a.Stats()
	if err != nil || stats.OffersAccepted != 1 || stats.FramesRefused < 1 {
		t.Errorf("stats %+v %v", stats, err)
	}
	if err := a.Disconnected(now + 3); err != nil {
		t.Fatal(err)
	}
	if err := a.Drain(now + 3); err != nil {
		t.Fatal(err)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = a.State()
	wantCode(t, err, tessera.ErrStopped)
	wantCode(t, a.Connect(now), tessera.ErrStopped)
	_, err = a.HandleInput(now, []byte{1})
	wantCode(t, err, tessera.ErrStopped)
	_, _, err = a.PollEvent()
	wantCode(t, err, tessera.ErrStopped)
	_, err = a.LastError()
	wantCode(t, err, tessera.ErrStopped)
	if err := a.Close(); err != nil {
		t.Error("a second Close:", err)
	}
}

// encode returns the frame of a message given by its readable fields.
func encode(t *testing.T, kind string, fields map[string]any) []byte {
	t.Helper()
	frame, err := tessera.EncodeMessage(&tessera.Message{Type: kind, Fields: fields})
	if err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return frame
}

// splitFrames cuts a byte stream into its frames and decodes them.
func splitFrames(t *testing.T, stream []byte) []*tessera.Message {
	t.Helper()
	var out []*tessera.Message
	for len(stream) > 0 {
		if len(stream) < 8 {
			t.Fatalf("%d bytes are no frame", len(stream))
		}
		end := 8 + int(binary.LittleEndian.Uint32(stream[4:8]))
		if end > len(stream) {
			t.Fatalf("a frame of %d bytes in %d", end, len(stream))
		}
		m, err := tessera.DecodeMessage(stream[:end])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
		stream = stream[end:]
	}
	return out
}

func types(messages []*tessera.Message) []string {
	var out []string
	for _, m := range messages {
		out = append(out, m.Type)
	}
	return out
}

// sentFrames polls every queued frame, decoded.
func sentFrames(t *testing.T, a *tessera.Agent, now uint64) []*tessera.Message {
	t.Helper()
	var stream []byte
	buf := make([]byte, tessera.MaxFrame)
	for {
		n, err := a.PollTransmit(now, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return splitFrames(t, stream)
		}
		stream = append(stream, buf[:n]...)
	}
}

// deliver feeds frame the way a host does: after each HandleInput it reads
// every event, copying each EventJobData piece into into at its offset,
// before it passes the bytes not taken yet. It returns the events.
func deliver(t *testing.T, a *tessera.Agent, now uint64, frame, into []byte) []tessera.Event {
	t.Helper()
	var events []tessera.Event
	for rounds := 0; ; rounds++ {
		if rounds > 64 {
			t.Fatal("the agent stopped taking input")
		}
		n, err := a.HandleInput(now, frame)
		if err != nil {
			t.Fatal(err)
		}
		frame = frame[n:]
		for {
			ev, ok, err := a.PollEvent()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			events = append(events, ev)
			if ev.Kind != tessera.EventJobData {
				continue
			}
			if ev.Len <= 0 || ev.Len > tessera.MaxInputPiece || ev.Offset+uint64(ev.Len) > uint64(len(into)) {
				t.Fatalf("a piece of %d bytes at %d", ev.Len, ev.Offset)
			}
			got, err := a.ReadInput(ev.Job, into[ev.Offset:])
			if err != nil || got != ev.Len {
				t.Fatalf("ReadInput: %d of %d bytes: %v", got, ev.Len, err)
			}
		}
		if len(frame) == 0 {
			return events
		}
	}
}

// assignJob offers and assigns job: kernel, buffer 0 holding data, buffer 1
// of outLen bytes read back.
func assignJob(t *testing.T, a *tessera.Agent, now, job uint64, kernel, data []byte, outLen int) {
	t.Helper()
	feed(t, a, now, encode(t, "JobOffer", map[string]any{
		"job": job, "requirements": map[string]any{"memory_mib": 1, "features": 0}, "est_gpu_ms": 10,
		"bytes_in": 1 << 20, "bytes_out": 1 << 16, "max_price": 10000, "deadline_ms": 30000,
	}))
	if got := types(sentFrames(t, a, now)); len(got) != 1 || got[0] != "OfferAccept" {
		t.Fatalf("sent %v, want OfferAccept", got)
	}
	kroot, droot := tessera.MerkleRoot(kernel), tessera.MerkleRoot(data)
	feed(t, a, now, encode(t, "JobAssign", map[string]any{
		"job": job, "requester_nonce": hex.EncodeToString(make([]byte, 32)),
		"kernel": map[string]any{"len": len(kernel), "root": kroot.String(), "entry_point": "main",
			"specialization": []any{}, "push_constants": "", "grid": []int{1, 1, 1}},
		"buffers": []any{
			map[string]any{"binding": 0, "len": len(data), "init_len": len(data), "readback": false},
			map[string]any{"binding": 1, "len": outLen, "init_len": 0, "readback": true},
		},
		"inputs_root": droot.String(),
	}))
	ev, ok, err := a.PollEvent()
	if err != nil || !ok || ev.Kind != tessera.EventJobAssigned || ev.Job != job {
		t.Fatalf("event %+v %v %v, want JobAssigned", ev, ok, err)
	}
}

func inputChunk(t *testing.T, job uint64, stream, index int, data []byte) []byte {
	t.Helper()
	digest := tessera.MerkleLeafHash(data)
	return encode(t, "InputChunk", map[string]any{
		"job": job, "stream": stream, "index": index, "digest": digest.String(),
		"data": hex.EncodeToString(data),
	})
}

func readyAgent(t *testing.T, now uint64) *tessera.Agent {
	t.Helper()
	a, err := tessera.NewAgent(testDeviceConfig(), seedSigner(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(now); err != nil {
		t.Fatal(err)
	}
	drainTransmit(t, a, now)
	feed(t, a, now, wireFrame(t, "welcome"))
	drainTransmit(t, a, now)
	feed(t, a, now, wireFrame(t, "ready"))
	if ev, ok, err := a.PollEvent(); err != nil || !ok || ev.Kind != tessera.EventReady {
		t.Fatalf("event %+v %v %v, want Ready", ev, ok, err)
	}
	return a
}

// An 8 KiB input chunk reaches the host in several EventJobData pieces;
// the outputs' frames are written into the host's buffer: nothing taken
// while the frames queued before leave no room for a chunk, a buffer that
// can never hold one refused.
func TestAgentJobData(t *testing.T) {
	var now uint64 = 5_000_000
	a := readyAgent(t, now)
	defer a.Close()
	kernel := generated(128)
	data := generated(tessera.ChunkSize + 100)
	output := make([]byte, 2*tessera.ChunkSize+10)
	for i := range output {
		output[i] = byte(i*13 + 1)
	}
	assignJob(t, a, now, 1, kernel, data, len(output))
	gcStress()

	gotKernel := make([]byte, len(kernel))
	events := deliver(t, a, now, inputChunk(t, 1, 0, 0, kernel), gotKernel)
	if len(events) != 1 || events[0] != (tessera.Event{Kind: tessera.EventJobData, Job: 1, Len: 128}) {
		t.Fatalf("kernel events %+v", events)
	}
	got := make([]byte, len(data))
	events = deliver(t, a, now, inputChunk(t, 1, 1, 0, data[:tessera.ChunkSize]), got)
	if len(events) < tessera.ChunkSize/tessera.MaxInputPiece {
		t.Fatalf("an 8 KiB chunk in %d pieces", len(events))
	}
	var next uint64
	for _, ev := range events {
		if ev.Kind != tessera.EventJobData || ev.Stream != 1 || ev.Offset != next {
			t.Fatalf("event %+v, want a piece at %d", ev, next)
		}
		next += uint64(ev.Len)
	}
	if next != tessera.ChunkSize {
		t.Fatalf("pieces of %d bytes in all", next)
	}
	events = deliver(t, a, now, inputChunk(t, 1, 1, 1, data[tessera.ChunkSize:]), got)
	want := []tessera.Event{
		{Kind: tessera.EventJobData, Job: 1, Stream: 1, Offset: tessera.ChunkSize, Len: 100},
		{Kind: tessera.EventRunJob, Job: 1},
	}
	if len(events) != 2 || events[0] != want[0] || events[1] != want[1] {
		t.Fatalf("events %+v, want %+v", events, want)
	}
	if !bytes.Equal(gotKernel, kernel) || !bytes.Equal(got, data) {
		t.Fatal("the pieces read are not the inputs sent")
	}
	if got := types(sentFrames(t, a, now)); len(got) != 1 || got[0] != "Started" {
		t.Fatalf("sent %v, want Started", got)
	}

	// Room for one chunk's frame (header, job, stream, index, digest, a
	// two-byte length, the data), but a Progress frame is queued: it goes
	// first and nothing is taken; sent, the next call takes the chunk.
	chunkFrame := 8 + 3 + 32 + 2 + tessera.ChunkSize
	out := make([]byte, tessera.TransmitBuffer)
	if err := a.ReportProgress(now, 1, 500); err != nil {
		t.Fatal(err)
	}
	var stream []byte
	taken, written, err := a.SendOutput(now, 1, 1, output, out[:chunkFrame])
	if err != nil || taken != 0 || written == 0 || written >= chunkFrame {
		t.Fatalf("SendOutput behind a queued frame: took %d, wrote %d: %v", taken, written, err)
	}
	stream = append(stream, out[:written]...)
	taken, written, err = a.SendOutput(now, 1, 1, output, out[:chunkFrame])
	if err != nil || taken != tessera.ChunkSize || written != chunkFrame {
		t.Fatalf("SendOutput: took %d, wrote %d: %v", taken, written, err)
	}
	stream = append(stream, out[:written]...)
	// A buffer that can never hold the next chunk's frame.
	_, _, err = a.SendOutput(now, 1, 1, output[taken:], out[:100])
	wantCode(t, err, tessera.ErrBufferTooSmall)
	_, _, err = a.SendOutput(now, 1, 1, output[taken:], nil)
	wantCode(t, err, tessera.ErrBufferTooSmall)
	// With TransmitBuffer bytes every call takes a chunk.
	for rest := output[taken:]; len(rest) > 0; rest = rest[taken:] {
		gcStress()
		taken, written, err = a.SendOutput(now, 1, 1, rest, out)
		if err != nil || taken == 0 {
			t.Fatalf("SendOutput: took %d: %v", taken, err)
		}
		stream = append(stream, out[:written]...)
	}
	messages := splitFrames(t, stream)
	if got := types(messages); strings.Join(got, " ") != "Progress OutputChunk OutputChunk OutputChunk" {
		t.Fatalf("sent %v", got)
	}
	var uploaded []byte
	for i, m := range messages[1:] {
		chunk := unhex(t, m.Fields["data"].(string))
		digest := tessera.MerkleLeafHash(chunk)
		if m.Fields["index"] != json.Number(fmt.Sprint(i)) || m.Fields["digest"] != digest.String() {
			t.Errorf("chunk %d: %v", i, m.Fields)
		}
		uploaded = append(uploaded, chunk...)
	}
	if !bytes.Equal(uploaded, output) {
		t.Fatal("the chunks sent are not the output")
	}
	if got := sentFrames(t, a, now); len(got) != 0 {
		t.Fatalf("%v left queued", types(got))
	}
	if err := a.FinishJob(now, 1, tessera.Usage{GPUTimeMicros: 1000, Dispatches: 1}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(types(sentFrames(t, a, now)), " "); got != "Completed UsageReport Receipt" {
		t.Fatalf("sent %s", got)
	}
}

// The pieces of a chunk arrive before it is checked; one that fails ends
// the job with EventCancelJob (CancelInputIntegrity) instead of its last
// piece, and the peer is told.
func TestAgentInputIntegrity(t *testing.T) {
	var now uint64 = 5_000_000
	a := readyAgent(t, now)
	defer a.Close()
	kernel := generated(128)
	data := generated(tessera.ChunkSize)
	assignJob(t, a, now, 3, kernel, data, 16)
	deliver(t, a, now, inputChunk(t, 3, 0, 0, kernel), make([]byte, len(kernel)))
	bad := inputChunk(t, 3, 1, 0, data)
	bad[len(bad)-1] ^= 1
	events := deliver(t, a, now, bad, make([]byte, len(data)))
	if len(events) < 2 {
		t.Fatalf("events %+v", events)
	}
	pieces, last := events[:len(events)-1], events[len(events)-1]
	total := 0
	for _, ev := range pieces {
		if ev.Kind != tessera.EventJobData {
			t.Fatalf("event %+v before the cancel", ev)
		}
		total += ev.Len
	}
	if total >= tessera.ChunkSize {
		t.Fatalf("%d bytes delivered of a chunk that failed", total)
	}
	if last.Kind != tessera.EventCancelJob || last.Job != 3 || last.Reason != tessera.CancelInputIntegrity {
		t.Fatalf("last event %+v, want CancelJob for input integrity", last)
	}
	if got := types(sentFrames(t, a, now)); !strings.Contains(strings.Join(got, " "), "Error") {
		t.Fatalf("sent %v, want an Error", got)
	}
}

// Several goroutines on one agent: the binding serializes the calls (the
// race detector would see the library's memory written by two threads).
func TestAgentConcurrentUse(t *testing.T) {
	a, err := tessera.NewAgent(testDeviceConfig(), seedSigner(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, tessera.MaxFrame)
			for i := 0; i < 50; i++ {
				if err := a.Connect(uint64(i)); err != nil && !errors.Is(err, tessera.ErrAlreadyConnected) {
					errs <- err
					return
				}
				if _, err := a.PollTransmit(uint64(i), buf); err != nil {
					errs <- err
					return
				}
				if err := a.Disconnected(uint64(i)); err != nil {
					errs <- err
					return
				}
				for {
					_, ok, err := a.PollEvent()
					if err != nil {
						errs <- err
						return
					}
					if !ok {
						break
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
