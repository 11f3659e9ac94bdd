// The Go net/http server of Benchmarks/compare, h2c (golang.org/x/net/http2/h2c): it answers
// the gRPC call the others get (POST, content-type application/grpc) with a raw-bytes echo of the
// request message and grpc-status 0 in the trailers. Built by the script in GOPATH mode from
// Debian's golang-go and golang-golang-x-net-dev.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func main() {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		w.Header().Set("Grpc-Status", "0")
	})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	server := &http.Server{Handler: h2c.NewHandler(echo, &http2.Server{MaxConcurrentStreams: 250})}
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
