module github.com/aibo-privacy/aibo-privacyd/test/powerloss

go 1.26.8

replace github.com/aibo-privacy/aibo-privacyd => ../..

require (
	github.com/aibo-privacy/aibo-privacyd v0.0.0-00010101000000-000000000000
	github.com/hanwen/go-fuse/v2 v2.12.1
	go.etcd.io/bbolt v1.5.0
)

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/net v0.59.0 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
