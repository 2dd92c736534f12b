module github.com/tessera-compute/tessera/bindings/go

go 1.22
