package tessera_test

// A signer's hardware report hook: the evidence an agent signs names the
// report the hook made for the evidence's hardware-report nonce; a hook
// that fails or panics, or none, names none; the hook goes with the signer
// to the agent that takes it.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

// evidenceWith connects an agent whose signer was given reports in turn
// (nil removes the hook; none: never had one) and returns the evidence it
// signs for a fresh challenge, verified. inside, if not nil, is called
// with the agent from within the hook.
func evidenceWith(t *testing.T, inside func(*tessera.Agent), reports ...tessera.HardwareReportFunc) (*tessera.EvidenceInfo, [32]byte) {
	t.Helper()
	const now = 1_000_000
	s := seedSigner(t)
	var a *tessera.Agent
	for _, report := range reports {
		if report != nil && inside != nil {
			report0 := report
			report = func(n [32]byte) (tessera.HardwareReportKind, [32]byte, error) {
				inside(a)
				return report0(n)
			}
		}
		if err := s.SetHardwareReport(report); err != nil {
			t.Fatal(err)
		}
	}
	a, err := tessera.NewAgent(testDeviceConfig(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Connect(now); err != nil {
		t.Fatal(err)
	}
	drainTransmit(t, a, now)
	var challenge [32]byte
	if _, err := rand.Read(challenge[:]); err != nil {
		t.Fatal(err)
	}
	welcome, err := tessera.EncodeMessage(&tessera.Message{Type: "Welcome", Fields: map[string]any{
		"version": 1, "challenge": hex.EncodeToString(challenge[:]), "heartbeat_ms": 5000,
	}})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, a, now, welcome)
	buf := make([]byte, tessera.MaxFrame)
	n, err := a.PollTransmit(now, buf)
	if err != nil || n == 0 {
		t.Fatalf("no evidence frame: %d %v", n, err)
	}
	m, err := tessera.DecodeMessage(buf[:n])
	if err != nil || m.Type != "Evidence" {
		t.Fatalf("%+v %v, want Evidence", m, err)
	}
	text, _ := m.Fields["bytes"].(string)
	evidence, err := hex.DecodeString(text)
	if err != nil {
		t.Fatal(err)
	}
	info, err := tessera.VerifyEvidence(evidence, challenge)
	if err != nil {
		t.Fatal(err)
	}
	return info, challenge
}

func TestSignerNamesItsHardwareReportInTheEvidence(t *testing.T) {
	var seen [][32]byte
	quote := func(nonce [32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		seen = append(seen, nonce)
		return tessera.HardwareReportTPM2Quote, sha256.Sum256(append([]byte("quote"), nonce[:]...)), nil
	}
	info, challenge := evidenceWith(t, nil, quote)
	// Made for the hardware nonce (docs/PROTOCOL.md, "Hardware attestation
	// reports"), computed here from the evidence's own fields.
	var pre []byte
	pre = append(pre, "tessera/hw-nonce/v1"...)
	pre = append(pre, challenge[:]...)
	pre = append(pre, info.PublicKey[:]...)
	pre = append(pre, info.EncKey[:]...)
	nonce := sha256.Sum256(pre)
	if len(seen) != 1 || seen[0] != nonce {
		t.Fatalf("the hook saw %x, want [%x]", seen, nonce)
	}
	want := sha256.Sum256(append([]byte("quote"), nonce[:]...))
	if info.HardwareReport.Kind != tessera.HardwareReportTPM2Quote || info.HardwareReport.Hash != want {
		t.Fatalf("evidence names %+v", info.HardwareReport)
	}

	// A hook that fails or panics, one removed, or none, names no report;
	// the agent still signs its evidence.
	failing := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		return 0, [32]byte{}, errors.New("the TPM is gone")
	}
	panicking := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		panic("the TPM driver crashed")
	}
	for name, reports := range map[string][]tessera.HardwareReportFunc{
		"failing": {failing}, "panicking": {panicking}, "removed": {quote, nil}, "none": {},
	} {
		info, _ := evidenceWith(t, nil, reports...)
		if info.HardwareReport != (tessera.HardwareReport{}) {
			t.Errorf("%s: evidence names %+v", name, info.HardwareReport)
		}
	}
	// Replaced: the last one names its report.
	other := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		return tessera.HardwareReportNvidiaCC, [32]byte{7}, nil
	}
	info, _ = evidenceWith(t, nil, quote, other)
	if info.HardwareReport != (tessera.HardwareReport{Kind: tessera.HardwareReportNvidiaCC, Hash: [32]byte{7}}) {
		t.Errorf("replaced: evidence names %+v", info.HardwareReport)
	}
}

// A hook that calls the agent that holds its signer, which is signing
// evidence, gets ErrInUse instead of a deadlock.
func TestAHardwareReportHookCallingItsAgentIsRefused(t *testing.T) {
	var stats, closing error
	inside := func(a *tessera.Agent) {
		_, stats = a.Stats()
		closing = a.Close()
	}
	quote := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		return tessera.HardwareReportTPM2Quote, [32]byte{1}, nil
	}
	done := make(chan *tessera.EvidenceInfo, 1)
	go func() {
		var info *tessera.EvidenceInfo
		// Sent also when the helper fails the test (it ends this goroutine).
		defer func() { done <- info }()
		info, _ = evidenceWith(t, inside, quote)
	}()
	select {
	case info := <-done:
		if info == nil || info.HardwareReport.Kind != tessera.HardwareReportTPM2Quote {
			t.Fatalf("evidence %+v", info)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a hook calling its agent deadlocked")
	}
	wantCode(t, stats, tessera.ErrInUse)
	wantCode(t, closing, tessera.ErrInUse)
}

func TestSetHardwareReportOnASignerTakenOrClosed(t *testing.T) {
	quote := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		return tessera.HardwareReportTPM2Quote, [32]byte{1}, nil
	}
	s := seedSigner(t)
	// Set, replaced, removed: each handle before is let go.
	for _, r := range []tessera.HardwareReportFunc{quote, quote, nil, quote} {
		if err := s.SetHardwareReport(r); err != nil {
			t.Fatal(err)
		}
	}
	a, err := tessera.NewAgent(testDeviceConfig(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.SetHardwareReport(quote), tessera.ErrStopped)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	closed := seedSigner(t)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, closed.SetHardwareReport(quote), tessera.ErrStopped)
}

// A hook that fails or panics is logged (the evidence alone would only
// name no report); one that names a report, or deliberately none, is not.
func TestAFailingHardwareReportHookIsLogged(t *testing.T) {
	const line = "hardware report callback failed"
	failing := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		return 0, [32]byte{}, errors.New("the TPM is gone")
	}
	panicking := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		panic("the TPM driver crashed")
	}
	quote := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		return tessera.HardwareReportTPM2Quote, [32]byte{1}, nil
	}
	none := func([32]byte) (tessera.HardwareReportKind, [32]byte, error) {
		return tessera.HardwareReportNone, [32]byte{}, nil
	}
	for name, c := range map[string]struct {
		report tessera.HardwareReportFunc
		logged bool
	}{
		"failing": {failing, true}, "panicking": {panicking, true},
		"naming a report": {quote, false}, "naming none": {none, false},
	} {
		logs := captureLog(t, tessera.LogWarn)
		evidenceWith(t, nil, c.report)
		if got := logs.find(line); got != c.logged {
			t.Errorf("%s: logged %v, want %v (%d lines)", name, got, c.logged, logs.count())
		}
		if err := tessera.SetLogger(nil, tessera.LogOff); err != nil {
			t.Fatal(err)
		}
	}
}
