package tessera_test

// The sans-IO agent through the Go API: a session up to an accepted offer
// with frames from the shared wire vectors, calls in the wrong order, a
// KeyStore signer (busy, failing, panicking, calling back in), and
// configuration errors.

import (
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
	_, err = a.SendOutput(now, 1, 0, []byte{1, 2, 3, 4})
	wantCode(t, err, tessera.ErrInvalidJobState)
	_, err = a.SendOutput(now, 1, 300, []byte{1})
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
