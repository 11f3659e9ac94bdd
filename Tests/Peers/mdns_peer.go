// mdns_peer: a go-micro-style mDNS peer built on hashicorp/mdns (the library go-micro's mdns
// registry forked), for MDNSTests. It encodes and decodes the TXT record the way go-micro's
// registry does: hex of zlib of the JSON of {Metadata, Service, Version, Endpoints}.
//
//	mdns_peer query SERVICE DOMAIN     queries until a node of SERVICE answers; prints it as JSON
//	mdns_peer register NODE SERVICE DOMAIN PORT IP
//	                                   publishes a node; prints "ready"; withdraws it on SIGTERM
//
// Built by the tests in GOPATH mode (GO111MODULE=off GOPATH=/usr/share/gocode, Debian's
// golang-github-hashicorp-mdns-dev).
package main

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/mdns"
)

type value struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Values []*value `json:"values"`
}

type endpoint struct {
	Name     string            `json:"name"`
	Request  *value            `json:"request"`
	Response *value            `json:"response"`
	Metadata map[string]string `json:"metadata"`
}

// go-micro's mdnsTxt: no JSON tags, so the keys are the field names
type mdnsTxt struct {
	Metadata  map[string]string
	Service   string
	Version   string
	Endpoints []*endpoint
}

func encodeTxt(txt *mdnsTxt) []string {
	b, err := json.Marshal(txt)
	if err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	encoded := hex.EncodeToString(buf.Bytes())
	var out []string
	for len(encoded) > 255 {
		out = append(out, encoded[:255])
		encoded = encoded[255:]
	}
	return append(out, encoded)
}

func decodeTxt(fields []string) (*mdnsTxt, error) {
	raw, err := hex.DecodeString(strings.Join(fields, ""))
	if err != nil {
		return nil, err
	}
	r, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	js, err := ioutil.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	var txt mdnsTxt
	if err := json.Unmarshal(js, &txt); err != nil {
		return nil, err
	}
	return &txt, nil
}

func query(service, domain string) {
	// a bound, not a measurement: the test waits for the output line
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		entries := make(chan *mdns.ServiceEntry, 16)
		params := mdns.DefaultParams(service)
		params.Domain = domain
		params.Entries = entries
		params.Timeout = time.Second
		go func() {
			mdns.Query(params)
			close(entries)
		}()
		for e := range entries {
			txt, err := decodeTxt(e.InfoFields)
			if err != nil || txt.Service != service || e.AddrV4 == nil {
				continue
			}
			out, _ := json.Marshal(map[string]interface{}{
				"id":       strings.TrimSuffix(e.Name, "."+service+"."+domain+"."),
				"address":  net.JoinHostPort(e.AddrV4.String(), strconv.Itoa(e.Port)),
				"service":  txt.Service,
				"version":  txt.Version,
				"metadata": txt.Metadata,
				"endpoints": func() []string {
					var names []string
					for _, ep := range txt.Endpoints {
						names = append(names, ep.Name)
					}
					return names
				}(),
			})
			fmt.Println(string(out))
			return
		}
	}
	fmt.Fprintln(os.Stderr, "no node of", service, "answered")
	os.Exit(1)
}

func register(node, service, domain string, port int, ip string) {
	txt := encodeTxt(&mdnsTxt{
		Metadata: map[string]string{"server": "go-peer", "protocols": "mucp"},
		Service:  service,
		Version:  "1.2.3",
		Endpoints: []*endpoint{{
			Name:     "Peer.Hello",
			Request:  &value{Name: "Request", Type: "Request", Values: []*value{{Name: "name", Type: "string"}}},
			Response: &value{Name: "Response", Type: "Response"},
		}},
	})
	zone, err := mdns.NewMDNSService(node, service, domain+".", "", port, []net.IP{net.ParseIP(ip)}, txt)
	if err != nil {
		log.Fatal(err)
	}
	server, err := mdns.NewServer(&mdns.Config{Zone: zone})
	if err != nil {
		log.Fatal(err)
	}
	// go-micro also publishes a per-service wildcard that its ListServices browses
	wildcard, err := mdns.NewMDNSService(service, "_services", domain+".", "", 9999, []net.IP{net.ParseIP("0.0.0.0")}, nil)
	if err != nil {
		log.Fatal(err)
	}
	listing, err := mdns.NewServer(&mdns.Config{Zone: wildcard})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	listing.Shutdown()
	server.Shutdown()
}

func main() {
	log.SetFlags(0)
	if len(os.Args) >= 4 && os.Args[1] == "query" {
		query(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) >= 7 && os.Args[1] == "register" {
		port, _ := strconv.Atoi(os.Args[5])
		register(os.Args[2], os.Args[3], os.Args[4], port, os.Args[6])
		return
	}
	fmt.Fprintln(os.Stderr, "usage: mdns_peer query SERVICE DOMAIN | register NODE SERVICE DOMAIN PORT IP")
	os.Exit(2)
}
