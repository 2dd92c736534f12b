package tessera_test

// End to end: the reference coordinator on loopback (throwaway TLS
// certificates), a provider on the Go Runtime, and tessera-requester
// submitting a 32x32 matrix multiply with the real kernel; the requester
// verifies the evidence, the receipt and a Merkle spot check, checks the
// product against its CPU reference and exits 0. The provider runs the job
// on the Vulkan device (lavapipe), through an Executor that hands it to the
// device, and through an Executor that multiplies in Go; each collects its
// receipts through the receipt callback, verifies them as a chain, and is
// drained by cancelling its context.
//
// The binaries come from `cargo build -p tessera-coordinator --bins`
// (target/debug, or TESSERA_BIN_DIR). Without them the test is skipped,
// unless TESSERA_REQUIRE_E2E is set (ci/go-test sets it): then it fails.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

// binaries returns the directory of the coordinator's programs.
func binaries(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TESSERA_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "target", "debug")
	}
	for _, name := range []string{"tessera-certs", "tessera-coordinator", "tessera-requester"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			msg := "no " + name + " in " + dir + " (cargo build -p tessera-coordinator --bins)"
			if os.Getenv("TESSERA_REQUIRE_E2E") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return dir
}

// coordinator is a running reference coordinator.
type coordinator struct {
	bin, addr, ca string
	pin           tessera.Hash // SHA-256 of the server key's SubjectPublicKeyInfo
}

func startCoordinator(t *testing.T) *coordinator {
	t.Helper()
	bin := binaries(t)
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(filepath.Join(bin, "tessera-certs"), certs).CombinedOutput(); err != nil {
		t.Fatalf("tessera-certs: %v\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(bin, "tessera-coordinator"), "--listen", "127.0.0.1:0", "--certs", certs)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("coordinator's log:\n%s", stderr.String())
		}
	})
	// Its first line ends with the address it listens on.
	lines := bufio.NewScanner(stdout)
	first := make(chan string, 1)
	go func() {
		if lines.Scan() {
			first <- lines.Text()
		}
		close(first)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-first:
		if !ok || !strings.Contains(line, "listening") {
			t.Fatalf("coordinator said %q", line)
		}
		fields := strings.Fields(line)
		pinText, err := os.ReadFile(filepath.Join(certs, "server.pin"))
		if err != nil {
			t.Fatal(err)
		}
		pin, err := tessera.ParseHash(strings.TrimSpace(string(pinText)))
		if err != nil {
			t.Fatal(err)
		}
		return &coordinator{bin: bin, addr: fields[len(fields)-1], ca: filepath.Join(certs, "ca.pem"), pin: pin}
	case <-time.After(60 * time.Second):
		t.Fatal("the coordinator did not start")
	}
	return nil
}

// request submits a 32x32 matrix multiply and returns the requester's
// output; the requester must exit 0 and print its result check.
func (c *coordinator) request(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, "tessera-requester"), "--coordinator", c.addr, "--ca", c.ca,
		"--demo-matmul", "32", "--kernel", filepath.Join(repoRoot(t), "core", "kernels", "matmul.spv"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tessera-requester: %v\n%s", err, out)
	}
	text := string(out)
	if !strings.Contains(text, "result check") || !strings.Contains(text, "vs the CPU reference: ok") {
		t.Fatalf("no result check in the requester's output:\n%s", text)
	}
	return text
}

// requestFailing submits the matrix multiply to a provider that fails it:
// the requester must exit non-zero, and says why.
func (c *coordinator) requestFailing(t *testing.T, why string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, "tessera-requester"), "--coordinator", c.addr, "--ca", c.ca,
		"--demo-matmul", "32", "--kernel", filepath.Join(repoRoot(t), "core", "kernels", "matmul.spv"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("tessera-requester succeeded on a failed job (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), why) {
		t.Fatalf("the requester does not say %q:\n%s", why, out)
	}
}

// receiptLog collects the receipts of a provider's receipt callback.
type receiptLog struct {
	mu       sync.Mutex
	jobs     []uint64
	receipts [][]byte
}

func (l *receiptLog) add(job uint64, receipt []byte) {
	l.mu.Lock()
	l.jobs = append(l.jobs, job)
	l.receipts = append(l.receipts, receipt)
	l.mu.Unlock()
}

func (l *receiptLog) all() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.receipts...)
}

// provider is a Runtime running on its own thread until cancel.
type provider struct {
	rt       *tessera.Runtime
	key      tessera.PublicKey
	receipts *receiptLog
	logs     *logLines
	cancel   context.CancelFunc
	done     chan error
}

func startProvider(t *testing.T, c *coordinator, executor *tessera.Executor) *provider {
	t.Helper()
	return startProviderWith(t, c, func(cfg *tessera.Config) { cfg.Executor = executor })
}

// startProviderWith starts a provider whose configuration change sets.
func startProviderWith(t *testing.T, c *coordinator, change func(*tessera.Config)) *provider {
	t.Helper()
	logs := captureLog(t, tessera.LogInfo)
	doc, err := tessera.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := tessera.PublicKeyFromPKCS8(doc)
	signer, err := tessera.NewSignerFromPKCS8(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tessera.DefaultConfig()
	cfg.Coordinator = c.addr
	cfg.ServerName = "localhost"
	cfg.CAFile = c.ca
	cfg.StoreDir = filepath.Join(t.TempDir(), "results")
	cfg.Policy.MaxConcurrent = 2
	cfg.Policy.PriceBase = 100
	cfg.Policy.PricePerGPUMs = 10
	cfg.Policy.PricePerMiBIn = 2
	cfg.Policy.PricePerMiBOut = 2
	cfg.Policy.Floor = 120
	cfg.DrainTimeout = 10 * time.Second
	change(&cfg)
	rt, err := tessera.NewRuntime(cfg, signer)
	if err != nil {
		t.Fatal(err)
	}
	p := &provider{rt: rt, key: key, receipts: &receiptLog{}, logs: logs, done: make(chan error, 1)}
	if err := rt.SetReceiptCallback(p.receipts.add); err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, p.cancel = context.WithCancel(context.Background())
	go func() { p.done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		p.cancel()
		rt.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for !logs.find("session established") {
		if time.Now().After(deadline) {
			st, _ := rt.StatusText()
			t.Fatalf("no session after 60 s; status: %s", st)
		}
		gcStress()
		time.Sleep(20 * time.Millisecond)
	}
	if st, err := rt.Status(); err != nil || st.State != tessera.ConnReady || st.Sessions < 1 {
		t.Fatalf("status %+v %v", st, err)
	}
	return p
}

// stop drains the provider by cancelling its context, then checks it
// drained cleanly and that its receipts form a chain from sequence 1, each
// of a completed job.
func (p *provider) stop(t *testing.T, wantReceipts int) {
	p.stopWith(t, wantReceipts, tessera.ReceiptCompleted)
}

func (p *provider) stopWith(t *testing.T, wantReceipts int, status tessera.ReceiptStatus) {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("Run after the cancel: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the provider did not drain")
	}
	st, err := p.rt.Status()
	completed := uint64(0)
	if status == tessera.ReceiptCompleted {
		completed = uint64(wantReceipts)
	}
	if err != nil || !st.Finished || st.JobsCompleted != completed || st.JobsCompleted+st.JobsFailed != uint64(wantReceipts) {
		t.Errorf("status after the drain %+v %v", st, err)
	}
	if !p.logs.find("draining") {
		t.Error("the drain was not logged")
	}
	receipts := p.receipts.all()
	if len(receipts) != wantReceipts {
		t.Fatalf("%d receipts through the callback, want %d", len(receipts), wantReceipts)
	}
	v, err := tessera.NewChainVerifier(p.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for i, r := range receipts {
		info, err := v.VerifyNext(r, nil)
		if err != nil {
			t.Fatalf("receipt %d: %v", i+1, err)
		}
		if info.Status != status || info.Sequence != uint64(i+1) || info.Job != p.receipts.jobs[i] {
			t.Errorf("receipt %d: %+v", i+1, info)
		}
	}
	if err := p.rt.Close(); err != nil {
		t.Fatal(err)
	}
}

// awaitAvailable waits until the runtime's status says whether the device
// takes work.
func awaitAvailable(t *testing.T, rt *tessera.Runtime, available bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := rt.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.DeviceUnavailable != available {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device's availability is still %v", !available)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// matmul multiplies row-major float32 matrices: C (m x n) = A (m x k) * B
// (k x n), as core/kernels/matmul.comp does.
func matmul(a, b []byte, m, n, k int) []byte {
	f := func(buf []byte, i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:])) }
	out := make([]byte, 4*m*n)
	for row := 0; row < m; row++ {
		for col := 0; col < n; col++ {
			var acc float32
			for i := 0; i < k; i++ {
				acc += f(a, row*k+i) * f(b, i*n+col)
			}
			binary.LittleEndian.PutUint32(out[4*(row*n+col):], math.Float32bits(acc))
		}
	}
	return out
}

// matmulJob checks a job is the requester's matrix multiply and returns
// its sizes.
func matmulJob(job *tessera.Job) (m, n, k int, err error) {
	if len(job.Buffers) != 3 || !job.Buffers[2].Readback || len(job.PushConstants) != 12 || job.EntryPoint != "main" {
		return 0, 0, 0, errors.New("not the matmul job")
	}
	u := func(i int) int { return int(binary.LittleEndian.Uint32(job.PushConstants[4*i:])) }
	return u(0), u(1), u(2), nil
}

func closeEnough(got, want []byte) bool {
	if len(got) != len(want) {
		return false
	}
	for i := 0; i < len(got); i += 4 {
		g := math.Float32frombits(binary.LittleEndian.Uint32(got[i:]))
		w := math.Float32frombits(binary.LittleEndian.Uint32(want[i:]))
		if math.Abs(float64(g-w)) > 1e-3*math.Max(1, math.Abs(float64(w))) {
			return false
		}
	}
	return true
}

func TestEndToEnd(t *testing.T) {
	c := startCoordinator(t)

	t.Run("device", func(t *testing.T) {
		p := startProvider(t, c, nil)
		out := c.request(t)
		t.Logf("requester:\n%s", out)
		p.stop(t, 1)
	})

	t.Run("device, the coordinator's key pinned", func(t *testing.T) {
		p := startProviderWith(t, c, func(cfg *tessera.Config) {
			cfg.CAFile = ""
			cfg.PinnedKey = &c.pin
		})
		c.request(t)
		p.stop(t, 1)
	})

	t.Run("another key pinned", func(t *testing.T) {
		logs := captureLog(t, tessera.LogDebug)
		cfg := tessera.DefaultConfig()
		cfg.Coordinator = c.addr
		cfg.ServerName = "localhost"
		wrong := c.pin
		wrong[0] ^= 1
		cfg.PinnedKey = &wrong
		cfg.DrainTimeout = time.Second
		rt, err := tessera.NewRuntime(cfg, seedSigner(t))
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(ctx) }()
		// It tries, and is refused by its own TLS check.
		deadline := time.Now().Add(30 * time.Second)
		for {
			if line, _ := rt.StatusText(); strings.Contains(line, "TLS") {
				break
			}
			if time.Now().After(deadline) {
				line, _ := rt.StatusText()
				t.Fatalf("the status line does not say the TLS check failed: %s", line)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		st, err := rt.Status()
		if err != nil || st.Sessions != 0 || logs.find("session established") {
			t.Fatalf("a session with a coordinator whose key is not the pinned one: %+v %v", st, err)
		}
	})

	t.Run("executor on the device", func(t *testing.T) {
		var mu sync.Mutex
		var ran []uint64
		var problems []string
		ex := &tessera.Executor{
			Run: func(job *tessera.Job) error {
				mu.Lock()
				defer mu.Unlock()
				ran = append(ran, job.ID)
				if job.Cancelled() {
					problems = append(problems, "cancelled at the start")
				}
				m, n, k, err := matmulJob(job)
				if err != nil {
					problems = append(problems, err.Error())
					return err
				}
				gcStress()
				usage, err := job.RunOnDevice()
				if err != nil {
					problems = append(problems, err.Error())
					return err
				}
				if usage.Dispatches != 1 {
					problems = append(problems, "usage without the dispatch")
				}
				// The device's product is in the outputs.
				want := matmul(job.Buffers[0].Init, job.Buffers[1].Init, m, n, k)
				if !closeEnough(job.Buffers[2].Output, want) {
					problems = append(problems, "the device's outputs differ from the Go product")
				}
				return nil
			},
			AcceptingJobs: func() bool { return true },
		}
		p := startProvider(t, c, ex)
		c.request(t)
		p.stop(t, 1)
		mu.Lock()
		defer mu.Unlock()
		if len(ran) != 1 || len(problems) > 0 {
			t.Fatalf("ran %v; problems: %v", ran, problems)
		}
	})

	t.Run("executor in Go", func(t *testing.T) {
		var mu sync.Mutex
		var problems []string
		ex := &tessera.Executor{
			Run: func(job *tessera.Job) error {
				m, n, k, err := matmulJob(job)
				if err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
					return err
				}
				start := time.Now()
				copy(job.Buffers[2].Output, matmul(job.Buffers[0].Init, job.Buffers[1].Init, m, n, k))
				return job.SetUsage(uint64(time.Since(start)/time.Microsecond), 1)
			},
		}
		p := startProvider(t, c, ex)
		c.request(t)
		p.stop(t, 1)
		if len(problems) > 0 {
			t.Fatal(problems)
		}
	})

	t.Run("executor not accepting jobs", func(t *testing.T) {
		var accepting atomic.Bool
		ex := &tessera.Executor{
			Run:           func(job *tessera.Job) error { _, err := job.RunOnDevice(); return err },
			AcceptingJobs: func() bool { return accepting.Load() },
		}
		p := startProvider(t, c, ex)
		awaitAvailable(t, p.rt, false)
		c.requestFailing(t, "no provider took the job")
		accepting.Store(true)
		awaitAvailable(t, p.rt, true)
		c.request(t)
		p.stop(t, 1)
	})

	t.Run("executor fails the job", func(t *testing.T) {
		var kept *tessera.Job
		ex := &tessera.Executor{
			Run: func(job *tessera.Job) error {
				kept = job
				wantCode(t, job.Fail(0, 0), tessera.ErrInvalidArgument)
				if err := job.Fail(tessera.ReceiptKernelRejected, 7); err != nil {
					return err
				}
				return errors.New("this host refuses the kernel")
			},
		}
		p := startProvider(t, c, ex)
		c.requestFailing(t, "kernel rejected: unparsable")
		p.stopWith(t, 1, tessera.ReceiptKernelRejected)
		// The job is the library's only during Run.
		if kept == nil {
			t.Fatal("Run was not called")
		}
		if !kept.Cancelled() {
			t.Error("a job whose Run returned is not cancelled")
		}
		_, err := kept.RunOnDevice()
		wantCode(t, err, tessera.ErrStopped)
		wantCode(t, kept.SetUsage(1, 1), tessera.ErrStopped)
		wantCode(t, kept.Fail(tessera.ReceiptHost, 0), tessera.ErrStopped)
	})

	t.Run("executor panics", func(t *testing.T) {
		ex := &tessera.Executor{
			Run: func(job *tessera.Job) error { panic("the host fell over") },
		}
		p := startProvider(t, c, ex)
		c.requestFailing(t, "failed for another reason (provider code 0)")
		p.stopWith(t, 1, tessera.ReceiptHost)
	})

	t.Run("executor replaces an output", func(t *testing.T) {
		ex := &tessera.Executor{
			Run: func(job *tessera.Job) error {
				job.Buffers[2].Output = []byte{1, 2, 3}
				return nil
			},
		}
		p := startProvider(t, c, ex)
		c.requestFailing(t, "failed for another reason (provider code 0)")
		p.stopWith(t, 1, tessera.ReceiptHost)
	})
}
