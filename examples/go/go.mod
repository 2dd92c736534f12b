module github.com/tessera-compute/tessera/examples/go

go 1.22

require github.com/tessera-compute/tessera/bindings/go v0.0.0

// The examples build against the binding in this repository, as a user's
// program would against a released version.
replace github.com/tessera-compute/tessera/bindings/go => ../../bindings/go
