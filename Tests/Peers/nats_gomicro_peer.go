// nats_gomicro_peer: a Go peer that publishes and receives events the way go-micro's NATS broker
// does, for the NATS broker's interop tests. It talks to the servers through nats.go.
//
// The wire, as go-micro's broker/nats has it: a topic is a subject, a queue a queue group, and
// the NATS payload is the broker.Message encoded by the broker's codec, JSON by default:
// {"Header":{"k":"v",…},"Body":"<base64 of the body>"} (encoding/json writes []byte as base64).
//
// Usage (every command takes -servers nats://HOST:PORT[,…] before its name):
//
//	publish -topic T -body TEXT [-header k=v,…]
//	subscribe -topic T [-queue Q] -count N
//
// publish prints "published" once the server answered a flush. subscribe prints "subscribed"
// once the subscription is known to the server, then one line per message —
// "message <topic> <header JSON> <body>" — and exits after N messages. A payload that does not
// decode prints "undecodable <topic> <payload>". Failures print one line on stderr and exit 1.
//
// Built in GOPATH mode (GO111MODULE=off GOPATH=/usr/share/gocode) against Debian's
// golang-github-nats-io-go-nats-dev (nats.go 1.22).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// message is go-micro's broker.Message.
type message struct {
	Header map[string]string
	Body   []byte
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	servers := flag.String("servers", nats.DefaultURL, "NATS servers, comma separated")
	flag.Parse()
	if flag.NArg() < 1 {
		fail("usage: nats_gomicro_peer -servers URLS publish|subscribe ...")
	}
	nc, err := nats.Connect(*servers, nats.Timeout(5*time.Second))
	if err != nil {
		fail("connect: %v", err)
	}
	defer nc.Close()
	command := flag.Arg(0)
	args := flag.NewFlagSet(command, flag.ExitOnError)
	topic := args.String("topic", "", "subject")
	switch command {
	case "publish":
		body := args.String("body", "", "the body")
		headers := args.String("header", "", "k=v,…")
		args.Parse(flag.Args()[1:])
		m := message{Header: map[string]string{}, Body: []byte(*body)}
		for _, pair := range strings.Split(*headers, ",") {
			if kv := strings.SplitN(pair, "=", 2); len(kv) == 2 {
				m.Header[kv[0]] = kv[1]
			}
		}
		payload, err := json.Marshal(&m)
		if err != nil {
			fail("encode: %v", err)
		}
		if err := nc.Publish(*topic, payload); err != nil {
			fail("publish: %v", err)
		}
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			fail("flush: %v", err)
		}
		fmt.Println("published")
	case "subscribe":
		queue := args.String("queue", "", "queue group")
		count := args.Int("count", 1, "messages to read")
		args.Parse(flag.Args()[1:])
		ch := make(chan *nats.Msg, 1024)
		var sub *nats.Subscription
		if *queue != "" {
			sub, err = nc.ChanQueueSubscribe(*topic, *queue, ch)
		} else {
			sub, err = nc.ChanSubscribe(*topic, ch)
		}
		if err != nil {
			fail("subscribe: %v", err)
		}
		defer sub.Unsubscribe()
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			fail("flush: %v", err)
		}
		fmt.Println("subscribed")
		for i := 0; i < *count; i++ {
			select {
			case msg := <-ch:
				var m message
				if err := json.Unmarshal(msg.Data, &m); err != nil {
					fmt.Printf("undecodable %s %s\n", msg.Subject, string(msg.Data))
					continue
				}
				header, _ := json.Marshal(m.Header)
				fmt.Printf("message %s %s %s\n", msg.Subject, header, string(m.Body))
			case <-time.After(60 * time.Second):
				fail("no message within 60 s")
			}
		}
	default:
		fail("unknown command %q", command)
	}
}
