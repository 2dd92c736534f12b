// Package tessera is the Go binding of Tessera, a provider agent for
// decentralized GPU compute networks, over its C library (libtessera).
//
// It covers what the C ABI (include/tessera.h) offers: device keys and
// signers (built in, or a Go [KeyStore] standing in for a secure element),
// verification of evidence, receipts and receipt chains, Merkle proofs and
// the hashes a receipt binds, the sans-IO [Agent], the Vulkan [Dispatcher],
// and the network [Runtime] that runs a whole provider.
//
// # Building
//
// The package links libtessera through pkg-config. Install the C library
// with cargo-c, then point pkg-config (and the dynamic loader) at it:
//
//	cargo cinstall -p tessera-ffi --release --prefix=$P --libdir=lib
//	export PKG_CONFIG_PATH=$P/lib/pkgconfig LD_LIBRARY_PATH=$P/lib
//	go build ./...
//
// # Conventions
//
// Every failure is an [*Error] carrying the code the C library returned,
// from the one code space all Tessera bindings share (docs/CODES.md):
// errors.Is(err, tessera.ErrBadSignature) tests for one code and
// errors.Is(err, tessera.ClassVerify) for a range of them.
//
// Handles ([Signer], [Agent], [Dispatcher], [ChainVerifier], [Runtime]) own
// C memory: Close releases it, and a finalizer releases a handle that was
// never closed once it is unreachable (a Runtime whose own callbacks refer
// to it stays reachable through them: close it). A handle may be used from
// several goroutines; calls on one
// handle are serialized. A call on a closed handle returns an [*Error] with
// [CodeStopped].
//
// Callbacks (a [KeyStore] signer, the log function, the executor and the
// receipt function of a [Runtime]) reach Go through runtime/cgo handles; the
// library never holds a Go pointer. A callback that calls a method of the
// handle whose call is running it gets [ErrInUse], as in C. A panic in a
// callback is recovered and reported to the library as a failure.
package tessera

/*
#cgo pkg-config: tessera
#cgo CFLAGS: -DTESSERA_HOSTED=1
#include <tessera.h>
*/
import "C"

import "fmt"

// HeaderVersion is the version of the header this package was compiled
// against, as major<<16 | minor<<8 | patch.
const HeaderVersion = uint32(C.TESSERA_VERSION_NUMBER)

// Sizes and limits of the protocol, as the header defines them.
const (
	// MaxFrame is the largest frame on the wire, header included: a
	// transmit buffer of this size always makes progress.
	MaxFrame = 8448
	// ChunkSize is the size of one input or output chunk (a Merkle leaf).
	ChunkSize = 8192
	// MaxInputPiece is the most bytes of one EventJobData (what ReadInput
	// copies): a chunk's data comes in pieces of this size, the last one
	// shorter.
	MaxInputPiece = 2048
	// TransmitBuffer is the size of a transmit buffer with which every
	// Agent.SendOutput takes a chunk.
	TransmitBuffer = 9472
	// MaxJobs is the most jobs an agent holds at once (the hosted library).
	MaxJobs = 32
	// MaxBuffers is the most buffers of one job.
	MaxBuffers = 8
	// ReceiptLen is the size of a receipt signed alone.
	ReceiptLen = 444
	// ReceiptMaxLen is the most bytes of a receipt in either form (batched:
	// 509 plus 32 per audit-path hash).
	ReceiptMaxLen = 765
	// EvidenceLen is the size of signed evidence.
	EvidenceLen = 448
	// MaxRecordBytes is the most bytes of an encoded result record.
	MaxRecordBytes = 2048
	// KeyPKCS8Len is the size of the PKCS#8 document GenerateKey returns.
	KeyPKCS8Len = 83
	// MaxProofLen is the longest Merkle audit path, in hashes.
	MaxProofLen = 32
	// MaxEntryPoint is the most bytes of a kernel entry point name.
	MaxEntryPoint = 64
	// MaxSpecConstants is the most specialization constants of a kernel.
	MaxSpecConstants = 16
	// MaxPushConstants is the most push-constant bytes of a kernel.
	MaxPushConstants = 128
)

// Version is a library version.
type Version struct {
	// Major, Minor and Patch are the version's parts.
	Major, Minor, Patch uint32
}

// String returns the version as "major.minor.patch".
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

func versionOf(n uint32) Version {
	return Version{Major: n >> 16, Minor: (n >> 8) & 0xFF, Patch: n & 0xFF}
}

// LibraryVersion returns the version of the libtessera the program runs
// with (it may differ from the header's when the shared library changed).
func LibraryVersion() Version {
	return versionOf(uint32(C.tessera_version()))
}

// BindingVersion returns the version of the header this package was
// compiled against.
func BindingVersion() Version {
	return versionOf(HeaderVersion)
}

// checkVersion reports whether a library of version lib can serve a
// binding compiled against header: the same major and minor version (a
// 0.x minor release may change the ABI), any patch.
func checkVersion(lib, header Version) error {
	if lib.Major != header.Major || lib.Minor != header.Minor {
		return fmt.Errorf("tessera: libtessera %s is loaded, but this binding was built for %s", lib, header)
	}
	return nil
}

func init() {
	// A library whose ABI differs from the header's would be called with
	// the wrong struct layouts: refuse to run, as the C examples do.
	if err := checkVersion(LibraryVersion(), BindingVersion()); err != nil {
		panic(err)
	}
}
