// Command apiproxy gives the test bed's pods the in-cluster address of the
// apiserver: it listens on the `kubernetes` Service's ClusterIP and port
// (10.0.0.1:443, on a dummy interface node.sh creates; there is no
// kube-proxy) and forwards each TCP connection unchanged to the apiserver on
// 127.0.0.1. TLS passes through: pods verify the apiserver's certificate
// (its SANs include 10.0.0.1) and authenticate with their own tokens.
//
//	apiproxy -listen 10.0.0.1:443 -to 127.0.0.1:PORT
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "", "address to listen on (host:port)")
	to := flag.String("to", "", "address to forward to (host:port)")
	flag.Parse()
	if *listen == "" || *to == "" {
		log.Fatal("usage: apiproxy -listen HOST:PORT -to HOST:PORT")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("forwarding %s -> %s", ln.Addr(), *to)
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go forward(c, *to)
	}
}

func forward(c net.Conn, to string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		log.Printf("%s: dial %s: %v", c.RemoteAddr(), to, err)
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	<-done
}
