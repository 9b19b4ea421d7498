module dohost.dev/examples/counter

go 1.27.1

require dohost.dev/go/dohost v0.0.0

require go.bytecodealliance.org/pkg v0.4.0 // indirect

replace dohost.dev/go/dohost => ../../../sdk-go
