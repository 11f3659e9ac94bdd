// GoNATS: the comparison client for Benchmarks/nats — nats.go (Debian's
// golang-github-nats-io-go-nats-dev) in the shapes `micro nats-bench` runs, printing the same
// JSON line.
//
//	publish: COUNT messages of SIZE bytes from one connection as fast as it takes them, then a
//	         flush; msgs_per_sec counts to the flush's answer.
//	latency: a publisher and a subscriber on two connections, COUNT messages one at a time, each
//	         published when the last arrived; p50_us and p99_us of publish -> receive.
//
// Built in GOPATH mode (GO111MODULE=off GOPATH=/usr/share/gocode) by Benchmarks/nats.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

func main() {
	servers := flag.String("servers", nats.DefaultURL, "NATS server URL(s)")
	mode := flag.String("mode", "publish", "publish or latency")
	count := flag.Int("count", 1000000, "messages")
	size := flag.Int("size", 100, "payload bytes")
	subject := flag.String("subject", "bench", "subject")
	flag.Parse()
	payload := make([]byte, *size)
	for i := range payload {
		payload[i] = 'x'
	}
	nc, err := nats.Connect(*servers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer nc.Close()
	switch *mode {
	case "publish":
		start, cpuStart := time.Now(), processCPU()
		for i := 0; i < *count; i++ {
			if err := nc.Publish(*subject, payload); err != nil {
				fmt.Fprintln(os.Stderr, "publish:", err)
				os.Exit(1)
			}
		}
		if err := nc.FlushTimeout(60 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "flush:", err)
			os.Exit(1)
		}
		seconds, cpu := time.Since(start).Seconds(), processCPU()-cpuStart
		fmt.Printf("{\"mode\":\"publish\",\"count\":%d,\"size\":%d,\"seconds\":%f,\"msgs_per_sec\":%d,\"cpu_ns_per_msg\":%d}\n",
			*count, *size, seconds, int(float64(*count)/seconds), int(cpu.Nanoseconds()/int64(*count)))
	case "latency":
		sub, err := nats.Connect(*servers)
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
		defer sub.Close()
		arrivals := make(chan time.Time, 1)
		if _, err := sub.Subscribe(*subject, func(*nats.Msg) { arrivals <- time.Now() }); err != nil {
			fmt.Fprintln(os.Stderr, "subscribe:", err)
			os.Exit(1)
		}
		sub.Flush()
		samples := make([]int64, 0, *count)
		for i := 0; i < *count; i++ {
			sent := time.Now()
			nc.Publish(*subject, payload) // written by nats.go's flusher, which each publish wakes
			at := <-arrivals
			samples = append(samples, at.Sub(sent).Microseconds())
		}
		sort.Slice(samples, func(a, b int) bool { return samples[a] < samples[b] })
		var sum int64
		for _, s := range samples {
			sum += s
		}
		fmt.Printf("{\"mode\":\"latency\",\"count\":%d,\"size\":%d,\"p50_us\":%d,\"p99_us\":%d,\"mean_us\":%d}\n",
			*count, *size, samples[len(samples)/2], samples[len(samples)*99/100], sum/int64(len(samples)))
	default:
		fmt.Fprintln(os.Stderr, "--mode is publish or latency")
		os.Exit(2)
	}
}

// processCPU is the CPU time this process has used, all threads.
func processCPU() time.Duration {
	var usage syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}
