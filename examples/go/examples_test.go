package examples_test

// The Go examples as their users run them: both programs built with `go
// build`, the provider (./provider) serving the requester's matrix
// multiplies through the reference coordinator, drained by SIGTERM, its
// receipts file verified by the settlement side (./verify_receipts), which
// refuses the file once a receipt is changed, dropped, reordered or
// checked against another key.
//
// The coordinator's programs come from `cargo build -p tessera-coordinator
// --bins` (target/debug, or TESSERA_BIN_DIR). Without them the test is
// skipped, unless TESSERA_REQUIRE_E2E is set (ci/go-test sets it).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func repoRoot(t *testing.T) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

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

// goBuild builds the example package pkg into dir.
func goBuild(t *testing.T, dir, pkg string) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	if msg, err := exec.Command(goTool, "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// lines collects a process's output lines as they come.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) read(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		l.mu.Lock()
		l.all = append(l.all, s.Text())
		l.mu.Unlock()
	}
}

func (l *lines) find(re *regexp.Regexp) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.all {
		if m := re.FindStringSubmatch(line); m != nil {
			return m
		}
	}
	return nil
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

func (l *lines) await(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := l.find(re); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %q in:\n%s", re, l.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type setup struct {
	bin, addr, ca, work string
	provider, verify    string
}

func start(t *testing.T) *setup {
	t.Helper()
	s := &setup{bin: binaries(t), work: t.TempDir()}
	s.provider = goBuild(t, s.work, "./provider")
	s.verify = goBuild(t, s.work, "./verify_receipts")
	certs := filepath.Join(s.work, "certs")
	if out, err := exec.Command(filepath.Join(s.bin, "tessera-certs"), certs).CombinedOutput(); err != nil {
		t.Fatalf("tessera-certs: %v\n%s", err, out)
	}
	s.ca = filepath.Join(certs, "ca.pem")
	cmd := exec.Command(filepath.Join(s.bin, "tessera-coordinator"), "--listen", "127.0.0.1:0", "--certs", certs)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out := &lines{}
	go out.read(stdout)
	m := out.await(t, regexp.MustCompile(`listening on (\S+)$`))
	s.addr = m[1]
	return s
}

// runProvider starts the provider example; stop sends SIGTERM and returns
// its standard error once it has exited 0.
func (s *setup) runProvider(t *testing.T, extra ...string) (stderr *lines, stop func() string) {
	t.Helper()
	args := append([]string{"--coordinator", s.addr, "--ca", s.ca, "--server-name", "localhost",
		"--key", filepath.Join(s.work, "device.key"), "--store", filepath.Join(s.work, "results"),
		"--receipts", filepath.Join(s.work, "receipts.txt"), "--status-every", "1s"}, extra...)
	cmd := exec.Command(s.provider, args...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderr = &lines{}
	read := make(chan struct{})
	go func() { stderr.read(pipe); close(read) }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	stderr.await(t, regexp.MustCompile("session established"))
	return stderr, func() string {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { <-read; done <- cmd.Wait() }()
		select {
		case err := <-done:
			exited = true
			if err != nil {
				t.Fatalf("provider: %v\n%s", err, stderr.text())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("the provider did not drain:\n%s", stderr.text())
		}
		return stderr.text()
	}
}

func (s *setup) request(t *testing.T) {
	t.Helper()
	out, err := exec.Command(filepath.Join(s.bin, "tessera-requester"), "--coordinator", s.addr, "--ca", s.ca,
		"--demo-matmul", "32", "--kernel", filepath.Join(repoRoot(t), "core", "kernels", "matmul.spv")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "vs the CPU reference: ok") {
		t.Fatalf("tessera-requester: %v\n%s", err, out)
	}
}

// verify runs the settlement example and returns its exit status and
// output.
func (s *setup) verifyFile(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(s.verify, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("verify_receipts: %v", err)
	return -1, ""
}

// receiptLines returns the receipt lines of a receipts file.
func receiptLines(t *testing.T, path string) (header []string, receipts []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if strings.HasPrefix(line, "#") {
			header = append(header, line)
		} else {
			receipts = append(receipts, line)
		}
	}
	return header, receipts
}

func writeLines(t *testing.T, path string, lines ...string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProviderAndSettlement(t *testing.T) {
	s := start(t)

	// Two jobs, then SIGTERM: the provider drains and verifies its own
	// receipts file.
	stderr, stop := s.runProvider(t)
	key := stderr.await(t, regexp.MustCompile(`device key ([0-9a-f]{64})`))[1]
	s.request(t)
	s.request(t)
	log := stop()
	if !strings.Contains(log, "drained;") || !strings.Contains(log, "2 receipts verified") {
		t.Fatalf("provider's log:\n%s", log)
	}
	receiptsFile := filepath.Join(s.work, "receipts.txt")
	header, receipts := receiptLines(t, receiptsFile)
	if len(receipts) != 2 || len(header) != 1 || !strings.Contains(header[0], key) {
		t.Fatalf("receipts file: %v %v", header, receipts)
	}

	// Restarted with the same key, store and file, the jobs through a Go
	// executor: the chain goes on.
	_, stop = s.runProvider(t, "--executor", "go")
	s.request(t)
	log = stop()
	if !regexp.MustCompile(`job \d+: main, grid \[2 2 1\], 3 buffers: \d+ us on the device`).MatchString(log) {
		t.Errorf("the Go executor did not say what it ran:\n%s", log)
	}
	if !strings.Contains(log, "3 receipts verified") {
		t.Fatalf("provider's log after the restart:\n%s", log)
	}
	header, receipts = receiptLines(t, receiptsFile)
	if len(receipts) != 3 || len(header) != 1 {
		t.Fatalf("receipts file after the restart: %v %v", header, receipts)
	}

	// The settlement side.
	code, out := s.verifyFile(t, "--public-key", key, receiptsFile)
	if code != 0 || strings.Count(out, ": ok\n") != 3 || !strings.Contains(out, "3 receipts verified") ||
		!strings.Contains(out, "from sequence 1 to 3; 3 completed, 0 failed") {
		t.Fatalf("verify_receipts (%d):\n%s", code, out)
	}
	t.Logf("verify_receipts:\n%s", out)
	for i := 1; i <= 3; i++ {
		if !strings.Contains(out, fmt.Sprintf("receipt %d: job ", i)) {
			t.Errorf("no line for receipt %d:\n%s", i, out)
		}
	}

	// Blank lines and comments are ignored.
	spaced := writeLines(t, filepath.Join(s.work, "spaced.txt"),
		"# a comment", "", receipts[0], "   ", "# another", receipts[1], receipts[2], "")
	if code, out := s.verifyFile(t, "--public-key", key, spaced); code != 0 {
		t.Errorf("with blank lines and comments (%d):\n%s", code, out)
	}

	flip := func(line string, at int) string {
		b := []byte(line)
		if b[at] == '0' {
			b[at] = '1'
		} else {
			b[at] = '0'
		}
		return string(b)
	}
	otherKey := strings.Repeat("ab", 32)
	bad := map[string]struct {
		args []string
		want string
	}{
		"a changed signature": {[]string{"--public-key", key, writeLines(t, filepath.Join(s.work, "sig.txt"),
			receipts[0], receipts[1], flip(receipts[2], len(receipts[2])-1))}, "verify_bad_signature"},
		"a changed payload": {[]string{"--public-key", key, writeLines(t, filepath.Join(s.work, "payload.txt"),
			receipts[0], flip(receipts[1], 200), receipts[2])}, "verify_bad_signature"},
		"a dropped receipt": {[]string{"--public-key", key, writeLines(t, filepath.Join(s.work, "gap.txt"),
			receipts[0], receipts[2])}, "verify_out_of_order"},
		"a replayed receipt": {[]string{"--public-key", key, writeLines(t, filepath.Join(s.work, "replay.txt"),
			receipts[0], receipts[1], receipts[1])}, "verify_replayed"},
		"the chain without its start": {[]string{"--public-key", key, writeLines(t, filepath.Join(s.work, "start.txt"),
			receipts[1], receipts[2])}, "verify_out_of_order"},
		"another key": {[]string{"--public-key", otherKey, receiptsFile}, "verify_unknown_key"},
		"a line that is not hex": {[]string{"--public-key", key, writeLines(t, filepath.Join(s.work, "nothex.txt"),
			receipts[0], "xyz")}, "not a receipt in hex"},
		"a truncated receipt": {[]string{"--public-key", key, writeLines(t, filepath.Join(s.work, "short.txt"),
			receipts[0][:100])}, "verify_malformed"},
	}
	for name, c := range bad {
		code, out := s.verifyFile(t, c.args...)
		t.Logf("%s: exit %d: %s", name, code, strings.TrimSpace(out))
		if code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, want 1 with %q:\n%s", name, code, c.want, out)
		}
	}
	// Usage errors.
	for _, args := range [][]string{
		{receiptsFile},
		{"--public-key", key},
		{"--public-key", "abc", receiptsFile},
		{"--public-key", key, filepath.Join(s.work, "missing.txt")},
	} {
		if code, out := s.verifyFile(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2:\n%s", args, code, out)
		}
	}
	// An empty file holds nothing to pay for.
	empty := writeLines(t, filepath.Join(s.work, "empty.txt"), "# nothing yet")
	if code, out := s.verifyFile(t, "--public-key", key, empty); code != 0 || !strings.Contains(out, "no receipts") {
		t.Errorf("empty file (%d):\n%s", code, out)
	}
}

// The provider's usage errors exit 2 before anything starts.
func TestProviderUsage(t *testing.T) {
	dir := t.TempDir()
	provider := goBuild(t, dir, "./provider")
	key := filepath.Join(dir, "device.key")
	for _, args := range [][]string{
		{"--ca", "ca.pem", "--key", key},
		{"--coordinator", "127.0.0.1:1", "--key", key},
		{"--coordinator", "127.0.0.1:1", "--ca", "ca.pem", "--pin", strings.Repeat("ab", 32), "--key", key},
		{"--coordinator", "127.0.0.1:1", "--ca", "ca.pem"},
		{"--coordinator", "127.0.0.1:1", "--ca", "ca.pem", "--key", key, "--executor", "gpu"},
		{"--coordinator", "127.0.0.1:1", "--pin", "abc", "--key", key},
		{"--coordinator", "127.0.0.1:1", "--ca", "ca.pem", "--key", key, "extra"},
	} {
		out, err := exec.Command(provider, args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2:\n%s", args, err, out)
		}
	}
	if _, err := os.Stat(key); err == nil {
		t.Error("a usage error created a key")
	}
}
