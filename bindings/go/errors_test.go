package tessera_test

// The code space: the Go table is docs/CODES.md's, code by code and name by
// name, and the library words every code with the same name; errors match
// their sentinels and classes; the versions agree.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

// codesTable reads the code table of docs/CODES.md.
func codesTable(t *testing.T) map[tessera.Code]string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "docs", "CODES.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| (\\d+) \\| `(\\w+)` \\|")
	out := map[tessera.Code]string{}
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if m := row.FindStringSubmatch(lines.Text()); m != nil {
			n, _ := strconv.Atoi(m[1])
			out[tessera.Code(n)] = m[2]
		}
	}
	if len(out) < 50 {
		t.Fatalf("only %d codes in docs/CODES.md", len(out))
	}
	return out
}

// sentinels lists every sentinel error the package exports, by the name of
// its code.
var sentinels = []*tessera.Error{
	tessera.ErrWouldBlock, tessera.ErrEventsPending, tessera.ErrBufferTooSmall, tessera.ErrNullArgument,
	tessera.ErrInvalidArgument, tessera.ErrPanic, tessera.ErrUnsupported, tessera.ErrIO, tessera.ErrNothing,
	tessera.ErrStopped, tessera.ErrInUse, tessera.ErrNotConnected, tessera.ErrAlreadyConnected,
	tessera.ErrUnknownJob, tessera.ErrInvalidJobState, tessera.ErrOutputOutOfOrder, tessera.ErrOutputIncomplete,
	tessera.ErrOutputMismatch, tessera.ErrCapacityExceeded, tessera.ErrNoInput, tessera.ErrInvalidConfig,
	tessera.ErrKeyRejected, tessera.ErrKeyMismatch, tessera.ErrNoRandomness, tessera.ErrSignerUnavailable,
	tessera.ErrSignerFailed, tessera.ErrStoreIO, tessera.ErrStoreOtherKey, tessera.ErrStoreConflict,
	tessera.ErrMalformed, tessera.ErrBadSignature, tessera.ErrUnknownKey, tessera.ErrWrongNonce,
	tessera.ErrReplayed, tessera.ErrOutOfOrder, tessera.ErrBrokenChain, tessera.ErrChunkProofMismatch,
	tessera.ErrVulkanLoaderUnavailable, tessera.ErrVulkanNoDevice, tessera.ErrVulkanDeviceNotFound,
	tessera.ErrVulkanAPIVersionTooOld, tessera.ErrVulkanNoComputeQueue, tessera.ErrVulkanValidationUnavailable,
	tessera.ErrVulkanNoUsableMemory, tessera.ErrVulkanError, tessera.ErrVulkanKhronosUnavailable,
	tessera.ErrPeerMalformed, tessera.ErrPeerFrameTooLarge, tessera.ErrPeerUnsupportedVersion,
	tessera.ErrPeerUnknownMessageType, tessera.ErrPeerUnexpectedMessage, tessera.ErrPeerUnknownJob,
	tessera.ErrPeerBadAssignment, tessera.ErrPeerChunkOutOfOrder, tessera.ErrPeerChunkDigestMismatch,
	tessera.ErrPeerRootMismatch, tessera.ErrPeerBadMagic, tessera.ErrPeerEvidenceRejected,
	tessera.ErrPeerReceiptRejected, tessera.ErrFailedKernelRejected, tessera.ErrFailedTimeout,
	tessera.ErrFailedDeadlineExceeded, tessera.ErrFailedDeviceLost, tessera.ErrFailedOutOfMemory,
	tessera.ErrFailedInputIntegrity, tessera.ErrFailedHost, tessera.ErrJobTimeout, tessera.ErrJobDeviceLost,
	tessera.ErrJobOutOfMemory, tessera.ErrJobVulkanError, tessera.ErrJobDeviceUnavailable,
	tessera.ErrJobValidatorUnavailable, tessera.ErrJobCancelled,
}

func TestCodeTable(t *testing.T) {
	table := codesTable(t)
	named := 0
	for code, name := range table {
		if code == tessera.CodeKernelBase {
			continue // "10000 + rule" is a range, not one code
		}
		named++
		if got := code.String(); got != name {
			t.Errorf("code %d: Go names it %q, docs/CODES.md %q", code, got, name)
		}
		if text := code.Text(); !strings.HasPrefix(text, name+": ") {
			t.Errorf("code %d: the library words it %q, docs/CODES.md names it %q", code, text, name)
		}
	}
	// One sentinel per named failure code, each with its own code.
	seen := map[tessera.Code]bool{}
	for _, s := range sentinels {
		if _, ok := table[s.Code]; !ok || seen[s.Code] {
			t.Errorf("sentinel of code %d: not in docs/CODES.md, or twice", s.Code)
		}
		seen[s.Code] = true
	}
	if len(seen) != named-1 { // all but ok
		t.Errorf("%d sentinels for %d named failure codes", len(seen), named-1)
	}
	// Kernel rules and unknown codes.
	if tessera.Code(10007).String() != "kernel_rejected" || !strings.HasPrefix(tessera.Code(10007).Text(), "kernel_rejected: ") {
		t.Errorf("kernel rule code: %s / %s", tessera.Code(10007), tessera.Code(10007).Text())
	}
	if rule, ok := tessera.Code(10007).KernelRule(); !ok || rule != 7 {
		t.Errorf("rule %d %v", rule, ok)
	}
	if _, ok := tessera.CodeInvalidArgument.KernelRule(); ok {
		t.Error("a rule from code 5")
	}
	if tessera.Code(99999).String() != "code 99999" || tessera.Code(99999).Text() != "unknown code 99999" {
		t.Errorf("unknown code: %s / %s", tessera.Code(99999), tessera.Code(99999).Text())
	}
}

func TestErrorMatching(t *testing.T) {
	_, err := tessera.VerifyReceipt([]byte{1, 2, 3}, tessera.PublicKey{})
	if !errors.Is(err, tessera.ErrMalformed) || !errors.Is(err, tessera.ClassVerify) {
		t.Fatalf("%v", err)
	}
	if errors.Is(err, tessera.ErrBadSignature) || errors.Is(err, tessera.ClassPeer) {
		t.Error("matches another code or class")
	}
	wrapped := fmt.Errorf("settling: %w", err)
	if !errors.Is(wrapped, tessera.ErrMalformed) {
		t.Error("the wrapped error lost its code")
	}
	if code, ok := tessera.CodeOf(wrapped); !ok || code != tessera.CodeVerifyMalformed {
		t.Errorf("CodeOf %v %v", code, ok)
	}
	if code, ok := tessera.CodeOf(nil); !ok || code != tessera.CodeOK {
		t.Errorf("CodeOf(nil) %v %v", code, ok)
	}
	if _, ok := tessera.CodeOf(errors.New("plain")); ok {
		t.Error("a code for a plain error")
	}
	want := "tessera: VerifyReceipt: verify_malformed: not a well-formed structure of the expected kind"
	if err.Error() != want {
		t.Errorf("error text %q, want %q", err.Error(), want)
	}

	classes := map[tessera.Code]tessera.Class{
		0: tessera.ClassNone, 1: tessera.ClassCall, 11: tessera.ClassCall, 100: tessera.ClassMisuse,
		200: tessera.ClassConfig, 211: tessera.ClassConfig, 300: tessera.ClassStore, 401: tessera.ClassVerify,
		501: tessera.ClassVulkan, 1013: tessera.ClassPeer, 2001: tessera.ClassJobFailed,
		2107: tessera.ClassDispatch, 10000: tessera.ClassKernelRejected, 19999: tessera.ClassKernelRejected,
		700: tessera.ClassUnknown, 20000: tessera.ClassUnknown,
	}
	for code, class := range classes {
		if got := code.Class(); got != class {
			t.Errorf("code %d in class %v, want %v", code, got, class)
		}
		if class.Error() == "" || class.String() == "" {
			t.Errorf("class %d has no words", class)
		}
	}
}

func TestVersion(t *testing.T) {
	lib, bind := tessera.LibraryVersion(), tessera.BindingVersion()
	if lib != bind {
		t.Errorf("library %s, binding %s", lib, bind)
	}
	if got := fmt.Sprint(lib); got != fmt.Sprintf("%d.%d.%d", lib.Major, lib.Minor, lib.Patch) {
		t.Errorf("version text %q", got)
	}
	if tessera.HeaderVersion != bind.Major<<16|bind.Minor<<8|bind.Patch {
		t.Errorf("header version %#x", tessera.HeaderVersion)
	}
}

func TestParseErrors(t *testing.T) {
	_, err := tessera.ParsePublicKey("abc")
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.ParseHash(strings.Repeat("zz", 32))
	wantCode(t, err, tessera.ErrInvalidArgument)
	h, err := tessera.ParseHash(strings.Repeat("ab", 32))
	if err != nil || h.String() != strings.Repeat("ab", 32) {
		t.Errorf("%v %v", h, err)
	}
}

// Argument errors of the verification calls, each with the library's code.
func TestVerifyErrors(t *testing.T) {
	_, err := tessera.MerkleProve(nil, 0)
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.MerkleProve([]tessera.Hash{{1}, {2}}, 2)
	wantCode(t, err, tessera.ErrInvalidArgument)
	tooLong := make([]tessera.Hash, tessera.MaxProofLen+1)
	wantCode(t, tessera.VerifyOutputChunk(tessera.Hash{}, 1, []byte{1}, 0, 1, tooLong), tessera.ErrInvalidArgument)
	_, err = tessera.OutputLeafCount(make([]tessera.BufferSpec, tessera.MaxBuffers+1))
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.KernelHash(tessera.KernelLayout{EntryPoint: strings.Repeat("x", tessera.MaxEntryPoint+1)})
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.KernelHash(tessera.KernelLayout{EntryPoint: "ma\x00in"})
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.KernelHash(tessera.KernelLayout{EntryPoint: "main", PushConstants: make([]byte, tessera.MaxPushConstants+1)})
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.KernelHash(tessera.KernelLayout{EntryPoint: "main", Specialization: make([]tessera.SpecConstant, tessera.MaxSpecConstants+1)})
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = tessera.VerifyEvidence(nil, tessera.Nonce{})
	wantCode(t, err, tessera.ErrMalformed)
	_, err = tessera.OpenEvidence([]byte{0xd2})
	wantCode(t, err, tessera.ErrMalformed)

	v, err := tessera.NewChainVerifier(tessera.PublicKey{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyNext(nil, nil)
	wantCode(t, err, tessera.ErrMalformed)
	v.Close()
	_, err = v.VerifyNext(nil, nil)
	wantCode(t, err, tessera.ErrStopped)
	_, err = v.Chain()
	wantCode(t, err, tessera.ErrStopped)
	if err := v.Close(); err != nil {
		t.Error(err)
	}
	// Hashes of nothing are hashes all the same.
	if tessera.MerkleRoot(nil) != tessera.MerkleRootOfBuffers(nil) {
		t.Error("the empty roots differ")
	}
	if tessera.MerkleRoot(nil).String() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Error("the empty root is not SHA-256 of nothing")
	}
}
