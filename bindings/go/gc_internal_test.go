package tessera

// Handles nobody closed are freed by their finalizers once unreachable, and
// the binding's counters see it; a library of another ABI is refused.

import (
	"runtime"
	"testing"
	"time"
)

type seedKeyStore struct{ s *Signer }

func (k seedKeyStore) PublicKey() (PublicKey, error)    { return k.s.PublicKey() }
func (k seedKeyStore) Sign(m []byte) (Signature, error) { return k.s.Sign(m) }
func counts() [5]int64 {
	return [5]int64{finalized.signers.Load(), finalized.agents.Load(), finalized.dispatchers.Load(),
		finalized.verifiers.Load(), finalized.runtimes.Load()}
}

func TestFinalizersFreeUnclosedHandles(t *testing.T) {
	before := counts()
	key, err := NewSignerFromSeed([32]byte{9})
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	const n = 10
	func() {
		for i := 0; i < n; i++ {
			if _, err := NewSignerFromSeed([32]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			if _, err := NewSignerFromKeyStore(seedKeyStore{key}); err != nil {
				t.Fatal(err)
			}
			s, _ := NewSignerFromSeed([32]byte{byte(i)})
			c := DefaultAgentConfig()
			c.Device.Name = "gc"
			if _, err := NewAgent(c, s, nil); err != nil {
				t.Fatal(err)
			}
			// An agent holding a KeyStore: the KeyStore's handle must not
			// keep the agent reachable.
			ks, _ := NewSignerFromKeyStore(seedKeyStore{key})
			if _, err := NewAgent(c, ks, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := NewChainVerifier(PublicKey{byte(i)}, nil); err != nil {
				t.Fatal(err)
			}
		}
		dc := DefaultDispatcherConfig()
		dc.RunBenchmark = false
		if _, err := OpenDispatcher(dc); err != nil {
			t.Fatal(err)
		}
		rc := DefaultConfig()
		rc.Coordinator = "127.0.0.1:1"
		rc.PinnedKey = &Hash{1}
		s, _ := NewSignerFromSeed([32]byte{1})
		if _, err := NewRuntime(rc, s); err != nil {
			t.Fatal(err)
		}
		// A runtime with a KeyStore, an executor and a receipt function,
		// none of which refers to it.
		ks, _ := NewSignerFromKeyStore(seedKeyStore{key})
		rc.Executor = &Executor{Run: func(*Job) error { return nil }, AcceptingJobs: func() bool { return true }}
		rt, err := NewRuntime(rc, ks)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.SetReceiptCallback(func(uint64, []byte) {}); err != nil {
			t.Fatal(err)
		}
	}()
	want := [5]int64{2 * n, 2 * n, 1, n, 2}
	deadline := time.Now().Add(30 * time.Second)
	for {
		runtime.GC()
		got := counts()
		done := true
		for i := range got {
			if got[i]-before[i] < want[i] {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("finalized (signers, agents, dispatchers, verifiers, runtimes) %v, want at least %v more than %v", got, want, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A closed handle's finalizer is gone: closing frees once.
func TestClosedHandlesAreNotFinalized(t *testing.T) {
	before := counts()
	func() {
		for i := 0; i < 10; i++ {
			s, _ := NewSignerFromSeed([32]byte{byte(i)})
			s.Close()
			v, _ := NewChainVerifier(PublicKey{}, nil)
			v.Close()
		}
	}()
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if got := counts(); got[0] != before[0] || got[3] != before[3] {
		t.Errorf("closed handles finalized: %v -> %v", before, got)
	}
}

func TestCheckVersion(t *testing.T) {
	if err := checkVersion(Version{0, 1, 7}, Version{0, 1, 0}); err != nil {
		t.Errorf("another patch refused: %v", err)
	}
	if err := checkVersion(Version{0, 2, 0}, Version{0, 1, 0}); err == nil {
		t.Error("another minor version taken")
	}
	if err := checkVersion(Version{1, 1, 0}, Version{0, 1, 0}); err == nil {
		t.Error("another major version taken")
	}
}
