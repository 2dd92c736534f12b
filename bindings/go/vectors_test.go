package tessera_test

// The shared test vectors (core/tests/vectors) through the Go API: every
// key, evidence, receipt and Merkle vector gives byte for byte what the
// vectors record, and every tampered one fails with its code. The decoded
// fields are compared with the vectors' readable forms as a whole.

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

type keyVector struct {
	Name      string `json:"name"`
	Seed      string `json:"seed"`
	PublicKey string `json:"public_key"`
	KeyID     string `json:"key_id"`
}

func TestKeyVectors(t *testing.T) {
	var vectors []keyVector
	loadVectors(t, "keys.json", &vectors)
	if len(vectors) == 0 {
		t.Fatal("no key vectors")
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			s, err := tessera.NewSignerFromSeed(unhex32(t, v.Seed))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			gcStress()
			pk, err := s.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			if pk.String() != v.PublicKey {
				t.Errorf("public key %s, want %s", pk, v.PublicKey)
			}
			if id := pk.KeyID(); id.String() != v.KeyID {
				t.Errorf("key id %s, want %s", id, v.KeyID)
			}
			parsed, err := tessera.ParsePublicKey(v.PublicKey)
			if err != nil || parsed != pk {
				t.Errorf("ParsePublicKey: %v %v", parsed, err)
			}
		})
	}
}

type evidenceVector struct {
	Name        string          `json:"name"`
	Challenge   string          `json:"challenge"`
	Hex         string          `json:"hex"`
	Evidence    json.RawMessage `json:"evidence"`
	Hash        string          `json:"hash"`
	KeyID       string          `json:"key_id"`
	Signature   string          `json:"signature"`
	ExpectError string          `json:"expect_error"`
}

// readable renders v as the vectors' readable JSON, decoded into plain
// values with exact numbers, for a comparison with reflect.DeepEqual.
func readable(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return decodeReadable(t, data)
}

func decodeReadable(t *testing.T, data []byte) any {
	t.Helper()
	var out any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func evidenceReadable(e *tessera.EvidenceInfo) map[string]any {
	d := e.Device
	return map[string]any{
		"agent_version": e.AgentVersion,
		"boot_id":       hexOf(e.BootID[:]),
		"capabilities": map[string]any{
			"name":                     d.Name,
			"api_version":              d.APIVersion,
			"copy_mbps":                d.CopyMBps,
			"device_id":                d.DeviceID,
			"device_local_bytes":       d.DeviceLocalBytes,
			"device_type":              uint32(d.Type),
			"driver_version":           d.DriverVersion,
			"features":                 d.Features,
			"fma_mflops":               d.FMAMFlops,
			"host_visible_bytes":       d.HostVisibleBytes,
			"max_invocations":          d.MaxInvocations,
			"max_shared_memory":        d.MaxSharedMemory,
			"max_storage_buffer_range": d.MaxStorageBufferRange,
			"max_workgroup_count":      d.MaxWorkgroupCount,
			"max_workgroup_size":       d.MaxWorkgroupSize,
			"subgroup_size":            d.SubgroupSize,
			"vendor_id":                d.VendorID,
		},
		"chain": map[string]any{
			"next_sequence": e.Chain.NextSequence,
			"prev_hash":     e.Chain.PrevHash.String(),
		},
		"challenge":  e.Challenge.String(),
		"issued_at":  e.IssuedAt,
		"public_key": e.PublicKey.String(),
		"enc_key":    hexOf(e.EncKey[:]),
		"hardware_report": map[string]any{
			"kind": e.HardwareReport.Kind,
			"hash": hexOf(e.HardwareReport.Hash[:]),
		},
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

func TestEvidenceVectors(t *testing.T) {
	var vectors []evidenceVector
	loadVectors(t, "evidence.json", &vectors)
	valid := 0
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			bytes := unhex(t, v.Hex)
			challenge := tessera.Nonce(unhex32(t, v.Challenge))
			info, err := tessera.VerifyEvidence(bytes, challenge)
			gcStress()
			opened, openErr := tessera.OpenEvidence(bytes)
			if v.ExpectError != "" {
				want := verifyErrors[v.ExpectError]
				if want == nil {
					t.Fatalf("unknown expect_error %q", v.ExpectError)
				}
				wantCode(t, err, want)
				if info != nil {
					t.Error("info returned with an error")
				}
				// Without a challenge only a challenge mismatch passes.
				if v.ExpectError == "WrongNonce" {
					if openErr != nil || opened.Challenge == challenge {
						t.Errorf("OpenEvidence: %v", openErr)
					}
				} else {
					wantCode(t, openErr, want)
				}
				return
			}
			valid++
			if err != nil {
				t.Fatal(err)
			}
			want := decodeReadable(t, v.Evidence).(map[string]any)
			if want["version"] != json.Number("3") {
				t.Fatalf("evidence version %v", want["version"])
			}
			delete(want, "version") // the layout's version, not a field of the info
			if got := readable(t, evidenceReadable(info)); !reflect.DeepEqual(got, want) {
				t.Errorf("decoded evidence differs from the readable form:\n got %v\nwant %v", got, want)
			}
			if openErr != nil || !reflect.DeepEqual(opened, info) {
				t.Errorf("OpenEvidence: %v, %+v", openErr, opened)
			}
			if info.KeyID.String() != v.KeyID || info.PublicKey.KeyID() != info.KeyID {
				t.Errorf("key id %s, want %s", info.KeyID, v.KeyID)
			}
			if h := tessera.EvidenceHash(bytes); h.String() != v.Hash {
				t.Errorf("hash %s, want %s", h, v.Hash)
			}
			if sig := hexOf(bytes[len(bytes)-64:]); sig != v.Signature {
				t.Errorf("signature %s, want %s", sig, v.Signature)
			}
		})
	}
	if valid < 2 {
		t.Fatalf("%d valid evidence vectors", valid)
	}
}

type receiptVector struct {
	Name        string `json:"name"`
	ChainBefore struct {
		NextSequence uint64 `json:"next_sequence"`
		PrevHash     string `json:"prev_hash"`
	} `json:"chain_before"`
	ExpectedNonce *string         `json:"expected_nonce"`
	Hash          string          `json:"hash"`
	Hex           string          `json:"hex"`
	InputLen      int             `json:"input_len"`
	PublicKey     string          `json:"public_key"`
	Receipt       json.RawMessage `json:"receipt"`
	Signature     string          `json:"signature"`
	ExpectError   string          `json:"expect_error"`
	Kernel        struct {
		Buffers []struct {
			Binding  uint32 `json:"binding"`
			InitLen  uint64 `json:"init_len"`
			Len      uint64 `json:"len"`
			Readback bool   `json:"readback"`
		} `json:"buffers"`
		EntryPoint     string      `json:"entry_point"`
		Grid           [3]uint32   `json:"grid"`
		PushConstants  string      `json:"push_constants"`
		Specialization [][2]uint32 `json:"specialization"`
		SPIRVLen       int         `json:"spirv_len"`
		SPIRVRoot      string      `json:"spirv_root"`
	} `json:"kernel"`
}

func receiptReadable(r *tessera.ReceiptInfo) map[string]any {
	return map[string]any{
		"ended_at":        r.EndedAt,
		"evidence_hash":   r.EvidenceHash.String(),
		"input_root":      r.InputRoot.String(),
		"job":             r.Job,
		"kernel_hash":     r.KernelHash.String(),
		"key_id":          r.KeyID.String(),
		"output_len":      r.OutputLen,
		"output_root":     r.OutputRoot.String(),
		"prev_hash":       r.PrevHash.String(),
		"price":           r.Price,
		"requester_nonce": r.RequesterNonce.String(),
		"result_hash":     r.ResultHash.String(),
		"result_seal":     r.ResultSeal.String(),
		"sequence":        r.Sequence,
		"started_at":      r.StartedAt,
		"status":          uint32(r.Status),
		"status_name":     r.Status.String(),
		"usage": map[string]any{
			"bytes_in":    r.Usage.BytesIn,
			"bytes_out":   r.Usage.BytesOut,
			"dispatches":  r.Usage.Dispatches,
			"gpu_time_us": r.Usage.GPUTimeMicros,
		},
	}
}

func (v *receiptVector) chainBefore(t *testing.T) *tessera.ChainState {
	return &tessera.ChainState{
		NextSequence: v.ChainBefore.NextSequence,
		PrevHash:     tessera.Hash(unhex32(t, v.ChainBefore.PrevHash)),
	}
}

func (v *receiptVector) nonce(t *testing.T) *tessera.Nonce {
	if v.ExpectedNonce == nil {
		return nil
	}
	n := tessera.Nonce(unhex32(t, *v.ExpectedNonce))
	return &n
}

func TestReceiptVectors(t *testing.T) {
	var vectors []receiptVector
	loadVectors(t, "receipts.json", &vectors)
	var chain [][]byte
	var chainKey tessera.PublicKey
	for i := range vectors {
		v := &vectors[i]
		t.Run(v.Name, func(t *testing.T) {
			receipt := unhex(t, v.Hex)
			pk := tessera.PublicKey(unhex32(t, v.PublicKey))
			verifier, err := tessera.NewChainVerifier(pk, v.chainBefore(t))
			if err != nil {
				t.Fatal(err)
			}
			defer verifier.Close()
			gcStress()
			info, err := verifier.VerifyNext(receipt, v.nonce(t))
			single, singleErr := tessera.VerifyReceipt(receipt, pk)
			if v.ExpectError != "" {
				want := verifyErrors[v.ExpectError]
				if want == nil {
					t.Fatalf("unknown expect_error %q", v.ExpectError)
				}
				wantCode(t, err, want)
				// A failed receipt leaves the chain where it was.
				if c, err := verifier.Chain(); err != nil || c != *v.chainBefore(t) {
					t.Errorf("chain moved on a failure: %+v %v", c, err)
				}
				// The chain's own checks are the verifier's; the
				// signature checks fail on the single receipt too.
				switch v.ExpectError {
				case "Malformed", "BadSignature", "UnknownKey":
					wantCode(t, singleErr, want)
				default:
					if singleErr != nil {
						t.Errorf("VerifyReceipt: %v", singleErr)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := decodeReadable(t, v.Receipt).(map[string]any)
			if want["version"] != json.Number("1") {
				t.Fatalf("receipt version %v", want["version"])
			}
			delete(want, "version")
			if got := readable(t, receiptReadable(info)); !reflect.DeepEqual(got, want) {
				t.Errorf("decoded receipt differs from the readable form:\n got %v\nwant %v", got, want)
			}
			if singleErr != nil || !reflect.DeepEqual(single, info) {
				t.Errorf("VerifyReceipt: %v %+v", singleErr, single)
			}
			if h := tessera.ReceiptHash(receipt); h.String() != v.Hash {
				t.Errorf("hash %s, want %s", h, v.Hash)
			}
			if sig := hexOf(receipt[len(receipt)-64:]); sig != v.Signature {
				t.Errorf("signature %s, want %s", sig, v.Signature)
			}
			if next, err := verifier.Chain(); err != nil || next.NextSequence != info.Sequence+1 || next.PrevHash.String() != v.Hash {
				t.Errorf("chain after: %+v %v", next, err)
			}
			checkBinds(t, v, info, pk)
			chain = append(chain, receipt)
			chainKey = pk
		})
	}

	// The valid receipts, verified in a row, form one chain from sequence 1.
	if len(chain) < 3 {
		t.Fatalf("%d valid receipts, want a chain of at least 3", len(chain))
	}
	verifier, err := tessera.NewChainVerifier(chainKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer verifier.Close()
	for i, r := range chain {
		info, err := verifier.VerifyNext(r, nil)
		if err != nil {
			t.Fatalf("receipt %d of the chain: %v", i+1, err)
		}
		if info.Sequence != uint64(i+1) {
			t.Fatalf("sequence %d, want %d", info.Sequence, i+1)
		}
	}
	// Once more: every one is now a replay.
	_, err = verifier.VerifyNext(chain[0], nil)
	wantCode(t, err, tessera.ErrReplayed)
}

// checkBinds recomputes what a receipt binds from its inputs: the SPIR-V
// root, the kernel hash, the input and output roots, the result hash and
// the seal.
func checkBinds(t *testing.T, v *receiptVector, info *tessera.ReceiptInfo, pk tessera.PublicKey) {
	t.Helper()
	k := v.Kernel
	if root := tessera.MerkleRoot(generated(k.SPIRVLen)); root.String() != k.SPIRVRoot {
		t.Errorf("SPIR-V root %s, want %s", root, k.SPIRVRoot)
	}
	layout := tessera.KernelLayout{
		SPIRVRoot:     tessera.Hash(unhex32(t, k.SPIRVRoot)),
		EntryPoint:    k.EntryPoint,
		PushConstants: unhex(t, k.PushConstants),
		Grid:          k.Grid,
	}
	for _, s := range k.Specialization {
		layout.Specialization = append(layout.Specialization, tessera.SpecConstant{ID: s[0], Value: s[1]})
	}
	var initLens, outLens []int
	for _, b := range k.Buffers {
		layout.Buffers = append(layout.Buffers, tessera.BufferSpec{Binding: b.Binding, Len: b.Len, InitLen: b.InitLen, Readback: b.Readback})
		initLens = append(initLens, int(b.InitLen))
		if b.Readback && info.Status == tessera.ReceiptCompleted {
			outLens = append(outLens, int(b.Len))
		}
	}
	kh, err := tessera.KernelHash(layout)
	if err != nil {
		t.Fatal(err)
	}
	if kh != info.KernelHash {
		t.Errorf("kernel hash %s, want %s", kh, info.KernelHash)
	}
	in := tessera.MerkleRootOfBuffers(split(t, generated(v.InputLen), initLens))
	if in != info.InputRoot {
		t.Errorf("input root %s, want %s", in, info.InputRoot)
	}
	out := tessera.MerkleRootOfBuffers(split(t, generated(int(info.OutputLen)), outLens))
	if out != info.OutputRoot {
		t.Errorf("output root %s, want %s", out, info.OutputRoot)
	}
	result := tessera.ResultHash(kh, in, out, info.OutputLen)
	if result != info.ResultHash {
		t.Errorf("result hash %s, want %s", result, info.ResultHash)
	}
	if seal := tessera.ResultSeal(pk, info.Job, result); seal != info.ResultSeal {
		t.Errorf("seal %s, want %s", seal, info.ResultSeal)
	}
	if code := info.Status.Code(); (info.Status == tessera.ReceiptCompleted) != (code == tessera.CodeOK) ||
		(code != tessera.CodeOK && code.Class() != tessera.ClassJobFailed) {
		t.Errorf("status %v has code %v", info.Status, code)
	}
}

type merkleVector struct {
	Name        string   `json:"name"`
	Buffers     []int    `json:"buffers"`
	Leaves      []string `json:"leaves"`
	Length      int      `json:"length"`
	Root        string   `json:"root"`
	Hex         string   `json:"hex"`
	Path        []string `json:"path"`
	Index       uint64   `json:"index"`
	TreeSize    uint64   `json:"tree_size"`
	LeafCount   uint64   `json:"leaf_count"`
	LeafHash    string   `json:"leaf_hash"`
	ChunkIndex  int      `json:"chunk_index"`
	ChunkFlip   *int     `json:"chunk_flip"`
	ExpectError string   `json:"expect_error"`
}

func TestMerkleVectors(t *testing.T) {
	var vectors []merkleVector
	loadVectors(t, "merkle.json", &vectors)
	proofs := 0
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			bufs := split(t, generated(v.Length), v.Buffers)
			root := tessera.MerkleRootOfBuffers(bufs)
			if root.String() != v.Root {
				t.Fatalf("root %s, want %s", root, v.Root)
			}
			if len(bufs) == 1 {
				if r := tessera.MerkleRoot(bufs[0]); r != root {
					t.Errorf("MerkleRoot %s, want %s", r, root)
				}
			}
			var chunks [][]byte
			var leaves []tessera.Hash
			for _, b := range bufs {
				for at := 0; at < len(b); at += tessera.ChunkSize {
					c := b[at:min(at+tessera.ChunkSize, len(b))]
					chunks = append(chunks, c)
					leaves = append(leaves, tessera.MerkleLeafHash(c))
				}
			}
			gcStress()
			if v.Path == nil {
				if len(leaves) != len(v.Leaves) {
					t.Fatalf("%d leaves, want %d", len(leaves), len(v.Leaves))
				}
				for i, l := range leaves {
					if l.String() != v.Leaves[i] {
						t.Errorf("leaf %d: %s, want %s", i, l, v.Leaves[i])
					}
				}
				if root.String() != v.Hex {
					t.Errorf("hex %s is not the root", v.Hex)
				}
				return
			}
			proofs++
			// A proof vector: its buffers are a job's read-back buffers.
			var specs []tessera.BufferSpec
			for i, n := range v.Buffers {
				specs = append(specs, tessera.BufferSpec{Binding: uint32(i), Len: uint64(n), Readback: true})
			}
			leafCount, err := tessera.OutputLeafCount(specs)
			if err != nil || leafCount != v.LeafCount || int(leafCount) != len(leaves) {
				t.Fatalf("leaf count %d (%v), want %d", leafCount, err, v.LeafCount)
			}
			var path []tessera.Hash
			for _, p := range v.Path {
				path = append(path, tessera.Hash(unhex32(t, p)))
			}
			chunk := append([]byte(nil), chunks[v.ChunkIndex]...)
			if v.ChunkFlip != nil {
				chunk[*v.ChunkFlip] ^= 1
			}
			err = tessera.VerifyOutputChunk(root, leafCount, chunk, v.Index, v.TreeSize, path)
			if v.ExpectError != "" {
				wantCode(t, err, verifyErrors[v.ExpectError])
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l := tessera.MerkleLeafHash(chunk); l.String() != v.LeafHash {
				t.Errorf("leaf hash %s, want %s", l, v.LeafHash)
			}
			proved, err := tessera.MerkleProve(leaves, v.Index)
			if err != nil {
				t.Fatal(err)
			}
			if len(proved) != len(path) || (len(path) > 0 && !reflect.DeepEqual(proved, path)) {
				t.Errorf("MerkleProve %v, want %v", proved, path)
			}
			var joined []byte
			for _, p := range proved {
				joined = append(joined, p[:]...)
			}
			if hexOf(joined) != v.Hex {
				t.Errorf("path bytes %x, want %s", joined, v.Hex)
			}
		})
	}
	if proofs == 0 {
		t.Fatal("no proof vectors")
	}
}
