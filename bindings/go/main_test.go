package tessera_test

import (
	"os"
	"runtime"
	"testing"
)

// TestMain runs the tests; with TESSERA_GO_GC_STRESS set, a goroutine
// collects garbage without pause meanwhile (finalizers included), so a
// handle or buffer the binding failed to keep alive across a C call is
// freed under that call.
func TestMain(m *testing.M) {
	if os.Getenv("TESSERA_GO_GC_STRESS") == "" {
		os.Exit(m.Run())
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	code := m.Run()
	close(stop)
	os.Exit(code)
}
