// grpc-go on both sides, for Benchmarks/compare's service-to-service shapes: `server` answers
// any method (/echo.Echo/Call here) with the request message, unread (a raw-bytes codec, as the
// swift-micro echo does); `client` calls it with a 100-byte message and a 5 s deadline per call
// from CONNS connections with IN_FLIGHT calls each, like `micro bench --connections --concurrency`,
// and prints "REQS_PER_SECOND FAILED". Built by the script in GOPATH mode from Debian's golang-go
// and golang-google-grpc-dev.
//
//	gogrpc server                      (prints "listening on 127.0.0.1:PORT")
//	gogrpc client ADDRESS CONNS IN_FLIGHT REQUESTS
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// rawCodec carries messages as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}
func (rawCodec) Name() string   { return "proto" }
func (rawCodec) String() string { return "proto" }

func serve() {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	echo := func(_ interface{}, stream grpc.ServerStream) error {
		var message []byte
		if err := stream.RecvMsg(&message); err != nil {
			return err
		}
		return stream.SendMsg(&message)
	}
	server := grpc.NewServer(grpc.CustomCodec(rawCodec{}), grpc.UnknownServiceHandler(echo))
	fmt.Printf("listening on %s\n", listener.Addr())
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func load(address string, conns, inFlight, requests int) {
	message := append([]byte{0x0a, 98}, make([]byte, 98)...)
	for i := 2; i < len(message); i++ {
		message[i] = 'b'
	}
	var left, failed int64 = int64(requests), 0
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < conns; c++ {
		conn, err := grpc.Dial(address, grpc.WithInsecure(), grpc.WithBlock())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer conn.Close()
		for m := 0; m < inFlight; m++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var answer []byte
				for atomic.AddInt64(&left, -1) >= 0 {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err := conn.Invoke(ctx, "/echo.Echo/Call", &message, &answer, grpc.ForceCodec(rawCodec{}))
					cancel()
					if err != nil || len(answer) != len(message) {
						atomic.AddInt64(&failed, 1)
					}
				}
			}()
		}
	}
	wg.Wait()
	fmt.Printf("%.0f %d\n", float64(requests)/time.Since(start).Seconds(), failed)
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "server" {
		serve()
		return
	}
	if len(os.Args) == 6 && os.Args[1] == "client" {
		conns, _ := strconv.Atoi(os.Args[3])
		inFlight, _ := strconv.Atoi(os.Args[4])
		requests, _ := strconv.Atoi(os.Args[5])
		load(os.Args[2], conns, inFlight, requests)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: gogrpc server | gogrpc client ADDRESS CONNS IN_FLIGHT REQUESTS")
	os.Exit(2)
}
