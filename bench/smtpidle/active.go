package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// active is the -active mode (issue 12, goal 4): sessions that are inside
// a transaction and send slowly, held beside the idle ones. Each one does
// EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT, DATA, then writes one line
// of its body every -trickle until the measurement is done, then the rest
// of its message and the final dot, and waits for the reply. They come
// from their own loopback addresses (after the idle flood's, -per-ip
// each), so they count against the same caps.
type active struct {
	c        config
	body     [][]byte // the message's lines, shared
	stop     chan struct{}
	wg       sync.WaitGroup
	inData   atomic.Int64 // sessions now in DATA
	accepted atomic.Int64
	lines    atomic.Int64
	mu       sync.Mutex
	failed   map[string]int // stage + first reply line -> count
}

// startActive opens c.active sessions (c.workers at a time) and returns
// once each is in DATA or has failed.
func startActive(c config) (*active, error) {
	pass, err := os.ReadFile(c.passFile)
	if err != nil || c.user == "" {
		return nil, fmt.Errorf("-active needs -user and -pass-file: %v", err)
	}
	a := &active{c: c, stop: make(chan struct{}), failed: map[string]int{}}
	a.body = messageLines(c.user, c.activeSize)
	auth := base64.StdEncoding.EncodeToString([]byte("\x00" + c.user + "\x00" + strings.TrimSpace(string(pass))))
	sem := make(chan struct{}, c.workers)
	var opening sync.WaitGroup
	for i := range c.active {
		sem <- struct{}{}
		opening.Add(1)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.session(source(c.n+i, c.perIP), auth, func() { <-sem; opening.Done() })
		}()
	}
	opening.Wait()
	return a, nil
}

func (a *active) fail(stage string, err error) {
	msg := stage
	if err != nil {
		msg += ": " + strings.TrimSpace(err.Error())
		if len(msg) > 90 {
			msg = msg[:90]
		}
	}
	a.mu.Lock()
	a.failed[msg]++
	a.mu.Unlock()
}

// session runs one slow transaction from the address from; opened is
// called once it is in DATA (or failed before).
func (a *active) session(from net.IP, auth string, opened func()) {
	var once sync.Once
	defer once.Do(opened)
	conn, greeting, err := open(a.c.addr, from)
	if err != nil {
		a.fail("connect", err)
		return
	}
	defer conn.Close()
	if !strings.HasPrefix(greeting, "220") {
		a.fail("greeting", fmt.Errorf("%s", greeting))
		return
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	s := &session{conn: conn, r: bufio.NewReader(conn)}
	for _, cmd := range []string{"EHLO slow.example", "STARTTLS"} {
		if err := s.cmd(cmd, "2"); err != nil {
			a.fail(strings.Fields(cmd)[0], err)
			return
		}
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	s.conn, s.r = tc, bufio.NewReader(tc)
	for _, step := range [][2]string{{"EHLO slow.example", "250"}, {"AUTH PLAIN " + auth, "235"},
		{"MAIL FROM:<" + a.c.user + ">", "250"}, {"RCPT TO:<" + a.c.user + ">", "250"}, {"DATA", "354"}} {
		if err := s.cmd(step[0], step[1]); err != nil {
			a.fail(strings.Fields(step[0])[0], err)
			return
		}
	}
	conn.SetDeadline(time.Time{})
	a.inData.Add(1)
	once.Do(opened)
	// One line per -trickle until stop; the rest at once after it.
	t := time.NewTicker(a.c.trickle)
	defer t.Stop()
	i := 0
	for ; i < len(a.body)-1; i++ {
		select {
		case <-a.stop:
			goto rest
		case <-t.C:
		}
		if _, err := s.conn.Write(a.body[i]); err != nil {
			a.inData.Add(-1)
			a.fail("DATA line (closed by the gateway?)", err)
			return
		}
		a.lines.Add(1)
	}
	<-a.stop
rest:
	a.inData.Add(-1)
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	for ; i < len(a.body); i++ {
		if _, err := s.conn.Write(a.body[i]); err != nil {
			a.fail("DATA rest", err)
			return
		}
	}
	if err := s.cmd(".", "250"); err != nil {
		a.fail("end of DATA", err)
		return
	}
	a.accepted.Add(1)
	s.cmd("QUIT", "221")
}

// finish lets every session end its message and reports.
func (a *active) finish() {
	close(a.stop)
	t0 := time.Now()
	a.wg.Wait()
	fmt.Printf("active sessions:        %d accepted (final dot to 250 for all took %s), %d body lines trickled in all\n",
		a.accepted.Load(), time.Since(t0).Round(time.Millisecond), a.lines.Load())
	var kinds []string
	for k := range a.failed {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Printf("active sessions failed: %d at %s\n", a.failed[k], k)
	}
}

// messageLines is one message of about size bytes, as lines with CRLF.
func messageLines(user string, size int) [][]byte {
	lines := [][]byte{[]byte("From: " + user + "\r\n"), []byte("To: " + user + "\r\n"),
		[]byte("Subject: slow sender\r\n"), []byte("\r\n")}
	line := strings.Repeat("slowly sent body text ", 3) + "\r\n"
	for n := 0; n < size; n += len(line) {
		lines = append(lines, []byte(line))
	}
	return lines
}

// inData is how many of a's sessions are in DATA now (0 without -active).
func inData(a *active) int64 {
	if a == nil {
		return 0
	}
	return a.inData.Load()
}
