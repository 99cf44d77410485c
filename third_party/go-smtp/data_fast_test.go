package smtp

// Differential tests of the bulk dataReader and lineLimitReader (data.go,
// lengthlimit_reader.go) against upstream's byte-wise code, kept verbatim in
// reference_impl_test.go. Both stacks (connection -> lineLimitReader ->
// bufio.Reader -> dataReader, as Conn builds them) get the same input, split
// into reads the same way, and must give the same bytes, errors and states
// at every Read, read the connection the same way, and leave the same bytes
// for the next command.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
	"testing/iotest"
)

var errInjected = errors.New("injected read error")

// connReader plays the connection: it serves in with reads whose sizes come
// from rng according to mode, can fail once at offset errAt, and logs every
// call so that the two stacks can be compared on how they read.
type connReader struct {
	in      []byte
	off     int
	rng     *rand.Rand
	mode    int
	errAt   int // offset of a single injected error; -1 for none
	errSent bool
	eofData bool // return io.EOF with the last bytes
	log     []string
}

const connModes = 7

func (c *connReader) Read(p []byte) (int, error) {
	n, err := c.read(p)
	c.log = append(c.log, fmt.Sprintf("%d:%d:%v", len(p), n, err))
	return n, err
}

func (c *connReader) read(p []byte) (int, error) {
	if c.errAt >= 0 && !c.errSent && c.off >= c.errAt {
		c.errSent = true
		return 0, errInjected
	}
	if c.off >= len(c.in) {
		if c.mode == 6 {
			return 0, nil // a connection that never makes progress again
		}
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	k := len(p)
	switch c.mode {
	case 1:
		k = 1
	case 2:
		k = 1 + c.rng.Intn(64)
	case 3:
		k = 1 + c.rng.Intn(len(p))
	case 4:
		k = c.rng.Intn(9) // empty reads too
	case 5:
		k = 1 + c.rng.Intn(4096)
	}
	k = minInt(minInt(k, len(p)), len(c.in)-c.off)
	if c.errAt >= 0 && !c.errSent && c.off < c.errAt {
		k = minInt(k, c.errAt-c.off)
	}
	copy(p, c.in[c.off:c.off+k])
	c.off += k
	if c.eofData && c.off == len(c.in) {
		return k, io.EOF
	}
	return k, nil
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// dataCase says how to run one input.
type dataCase struct {
	in        []byte
	connMode  int
	connSeed  int64
	errAt     int
	eofData   bool
	oneByte   bool // wrap the connection in iotest.OneByteReader
	lineLimit int
	bufSize   int   // bufio.Reader size; 4096 in Conn
	maxBytes  int64 // MaxMessageBytes; 0 for none
	readSeed  int64 // sizes of the consumer's reads
	readMode  int
	stopAfter int  // the consumer gives up after this many reads (0: never)
	probe     bool // after every read, UnreadByte (and ReadByte back)
}

const readModes = 6

func (dc *dataCase) readSize(rng *rand.Rand) int {
	switch dc.readMode {
	case 0:
		return 4096
	case 1:
		return 1
	case 2:
		return rng.Intn(100) // 0 too
	case 3:
		return 1 + rng.Intn(9000)
	case 4:
		return 32 << 10
	}
	return 1 + rng.Intn(16)
}

// stack is one implementation: a line limit reader and a data reader.
type stack struct {
	name   string
	ll     func(r io.Reader, limit int) (io.Reader, func() int)
	dr     func(br *bufio.Reader, limited bool, n int64) io.Reader
	unlimX func(r io.Reader)
}

var (
	refStack = stack{
		name: "reference",
		ll: func(r io.Reader, limit int) (io.Reader, func() int) {
			l := &refLineLimitReader{R: r, LineLimit: limit}
			return l, func() int { return l.curLineLength }
		},
		dr: func(br *bufio.Reader, limited bool, n int64) io.Reader {
			return &refDataReader{r: br, limited: limited, n: n}
		},
		unlimX: func(r io.Reader) { r.(*refDataReader).limited = false },
	}
	newStack = stack{
		name: "new",
		ll: func(r io.Reader, limit int) (io.Reader, func() int) {
			l := &lineLimitReader{R: r, LineLimit: limit}
			return l, func() int { return l.curLineLength }
		},
		dr: func(br *bufio.Reader, limited bool, n int64) io.Reader {
			return &dataReader{r: br, limited: limited, n: n}
		},
		unlimX: func(r io.Reader) { r.(*dataReader).limited = false },
	}
)

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%T(%p) %v", err, err, err)
}

// run feeds dc through s and writes everything observable into a
// transcript: every Read's n, bytes and error (by identity), the data
// reader's state after it, the drain go-smtp does after Data returns, the
// bytes left for the next command, and every read of the connection.
func run(s stack, dc *dataCase) string {
	var t strings.Builder
	conn := &connReader{in: dc.in, rng: rand.New(rand.NewSource(dc.connSeed)), mode: dc.connMode, errAt: dc.errAt, eofData: dc.eofData}
	var under io.Reader = conn
	if dc.oneByte {
		under = iotest.OneByteReader(conn)
	}
	ll, cur := s.ll(under, dc.lineLimit)
	br := bufio.NewReaderSize(ll, dc.bufSize)
	dr := s.dr(br, dc.maxBytes > 0, dc.maxBytes)
	state := func() string {
		switch d := dr.(type) {
		case *refDataReader:
			return fmt.Sprintf("state=%d n=%d", d.state, d.n)
		case *dataReader:
			return fmt.Sprintf("state=%d n=%d", d.state, d.n)
		}
		panic("unknown reader")
	}
	rng := rand.New(rand.NewSource(dc.readSeed))
	for calls := 1; ; calls++ {
		b := make([]byte, dc.readSize(rng))
		n, err := dr.Read(b)
		fmt.Fprintf(&t, "read(%d) = %d %q %s %s cur=%d buffered=%d\n", len(b), n, b[:n], errString(err), state(), cur(), br.Buffered())
		if dc.probe {
			// bufio's last-byte state, as UnreadByte sees it.
			if uerr := br.UnreadByte(); uerr != nil {
				fmt.Fprintf(&t, "probe %s\n", errString(uerr))
			} else {
				c, rerr := br.ReadByte()
				fmt.Fprintf(&t, "probe %q %s\n", c, errString(rerr))
			}
		}
		if err != nil || calls == dc.stopAfter || calls > 200000 {
			break
		}
	}
	// What Conn.handleData does once Session.Data returns.
	s.unlimX(dr)
	dn, derr := io.Copy(io.Discard, dr)
	fmt.Fprintf(&t, "drain = %d %s %s cur=%d buffered=%d\n", dn, errString(derr), state(), cur(), br.Buffered())
	// The next command is read from the same bufio.Reader: the byte
	// UnreadByte would put back, then the rest.
	fmt.Fprintf(&t, "unread = %s\n", errString(br.UnreadByte()))
	if derr == nil {
		// UnreadByte may have put one back; take it again.
		c, err := br.ReadByte()
		fmt.Fprintf(&t, "reread = %q %s\n", c, errString(err))
	}
	// Bounded: a connection that never makes progress gives (0, nil)
	// through bufio.Reader.Read for ever.
	var rest []byte
	buf := make([]byte, 512)
	for errs, empty := 0, 0; errs < 4 && empty < 200; {
		n, err := br.Read(buf)
		rest = append(rest, buf[:n]...)
		if n == 0 {
			empty++
		}
		if err != nil {
			fmt.Fprintf(&t, "rest = %q %s cur=%d\n", rest, errString(err), cur())
			rest = rest[:0]
			errs++
			if err == io.EOF {
				break
			}
		}
	}
	fmt.Fprintf(&t, "rest = %q cur=%d\n", rest, cur())
	fmt.Fprintf(&t, "conn off=%d reads=%s\n", conn.off, strings.Join(conn.log, " "))
	return t.String()
}

func checkSame(t testing.TB, dc *dataCase) {
	t.Helper()
	want := run(refStack, dc)
	got := run(newStack, dc)
	if got != want {
		t.Fatalf("case %+v:\ninput %q\n--- reference\n%s--- new\n%s", *dc, dc.in, clip(want), clip(got))
	}
}

func clip(s string) string {
	if len(s) > 8000 {
		return s[:8000] + "...\n"
	}
	return s
}

// adversarial pieces of DATA input.
var dataTokens = []string{
	".", "..", "...", "\r\n", "\r", "\n", ".\r\n", "\r\n.\r\n", "\n.\n",
	".\r", ".\n", "\r\r\n", "\r\n\r\n", "\r\n.", "\r\n..\r\n", "x", "ab",
	"Subject: hi", "QUIT\r\n", "MAIL FROM:<a@b>\r\n", "\x00", "\xff",
	"\r\n.\r", "\r\n.\n", ". \r\n", "\r\n.x",
}

func randomInput(rng *rand.Rand) []byte {
	var b bytes.Buffer
	for n := rng.Intn(40); n > 0; n-- {
		switch rng.Intn(10) {
		case 0: // a long line
			b.WriteString(strings.Repeat("a", rng.Intn(300)))
		case 1: // an ordinary line
			b.WriteString(strings.Repeat("word ", rng.Intn(20)) + "\r\n")
		default:
			b.WriteString(dataTokens[rng.Intn(len(dataTokens))])
		}
	}
	switch rng.Intn(4) {
	case 0: // no end marker: unexpected EOF
	case 1:
		b.WriteString("\r\n.\r\nQUIT\r\n")
	default:
		b.WriteString("\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n")
	}
	return b.Bytes()
}

func randomCase(rng *rand.Rand, in []byte) *dataCase {
	dc := &dataCase{
		in:       in,
		connMode: rng.Intn(connModes),
		connSeed: rng.Int63(),
		errAt:    -1,
		eofData:  rng.Intn(2) == 0,
		oneByte:  rng.Intn(6) == 0,
		bufSize:  []int{4096, 16, 17, 64, 100}[rng.Intn(5)],
		readSeed: rng.Int63(),
		readMode: rng.Intn(readModes),
		probe:    rng.Intn(3) == 0,
	}
	if rng.Intn(3) == 0 {
		dc.errAt = rng.Intn(len(in) + 1)
	}
	switch rng.Intn(4) {
	case 0:
		dc.lineLimit = 0
	case 1:
		dc.lineLimit = 2000
	default:
		dc.lineLimit = 1 + rng.Intn(120)
	}
	switch rng.Intn(4) {
	case 0:
		dc.maxBytes = 1 + rng.Int63n(int64(len(in)+10))
	case 1:
		dc.maxBytes = 35 << 20
	}
	if rng.Intn(5) == 0 {
		dc.stopAfter = 1 + rng.Intn(5)
	}
	return dc
}

func TestDataReaderSameAsReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	iters := 20000
	if testing.Short() {
		iters = 2000
	}
	for i := 0; i < iters; i++ {
		checkSame(t, randomCase(rng, randomInput(rng)))
	}
}

// Every fixed input, split every way the modes allow.
func TestDataReaderSameAsReferenceFixed(t *testing.T) {
	inputs := []string{
		"",
		".\r\n",
		"\r\n.\r\n",
		"..\r\n.\r\nQUIT\r\n",
		"a\r\n.\r\nQUIT\r\n",
		"a\n.\nb\r\n.\r\nQUIT\r\n",       // bare-LF end marker is data
		"a\r\n.\nb\r\n.\r\nQUIT\r\n",     // dot + bare LF
		"a\r\n.\rb\r\n.\r\nQUIT\r\n",     // dot + bare CR: upstream drops the CR
		"a\r\r\n.\r\nb\r\n.\r\nQUIT\r\n", // CR CR LF: no line start after it
		"a\rb\r\n.\r\n",
		"a\r\n..\r\n...\r\n.x\r\n.\r\n",
		"a\r\n.\r\r\n.\r\n",
		"no end marker\r\n",
		"no end marker\r\n.",
		"no end marker\r\n.\r",
		strings.Repeat("x", 5000) + "\r\n.\r\nQUIT\r\n",
		strings.Repeat("y", 999) + "\r\n" + strings.Repeat("z", 1000) + "\r\n.\r\n",
		strings.Repeat(".\r\n..\r\n", 500) + ".\r\n",
		strings.Repeat("\r", 300) + "\r\n.\r\n",
		strings.Repeat("\n", 300) + "\r\n.\r\n",
	}
	rng := rand.New(rand.NewSource(2))
	for _, in := range inputs {
		for cm := 0; cm < connModes; cm++ {
			for rm := 0; rm < readModes; rm++ {
				for _, limit := range []int{0, 2, 80, 1000} {
					for _, bs := range []int{16, 4096} {
						dc := &dataCase{in: []byte(in), connMode: cm, connSeed: rng.Int63(), errAt: -1,
							lineLimit: limit, bufSize: bs, readMode: rm, readSeed: rng.Int63()}
						checkSame(t, dc)
						dc.oneByte, dc.eofData = true, true
						checkSame(t, dc)
						dc.maxBytes = int64(1 + rng.Intn(len(in)+1))
						checkSame(t, dc)
						dc.errAt = rng.Intn(len(in) + 1)
						checkSame(t, dc)
						dc.probe = true
						checkSame(t, dc)
					}
				}
			}
		}
	}
}

// The end marker split at every offset across two reads of the connection,
// and the next command must still be there.
func TestDataReaderEndMarkerSplit(t *testing.T) {
	msg := "Subject: x\r\n\r\n..dot\r\nline\r\n.\r\nQUIT\r\n"
	for cut := 0; cut <= len(msg); cut++ {
		r := io.MultiReader(strings.NewReader(msg[:cut]), strings.NewReader(msg[cut:]))
		br := bufio.NewReader(&lineLimitReader{R: r, LineLimit: 1000})
		got, err := io.ReadAll(&dataReader{r: br})
		if err != nil || string(got) != "Subject: x\r\n\r\n.dot\r\nline\r\n" {
			t.Fatalf("cut %d: %q, %v", cut, got, err)
		}
		if line, err := br.ReadString('\n'); line != "QUIT\r\n" || err != nil {
			t.Fatalf("cut %d: next command %q, %v", cut, line, err)
		}
	}
}

func TestLineLimitReaderSameAsReference(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	iters := 30000
	if testing.Short() {
		iters = 3000
	}
	for i := 0; i < iters; i++ {
		in := randomInput(rng)
		limit := rng.Intn(200) - 2 // some negative limits too
		seed := rng.Int63()
		mode := rng.Intn(connModes)
		var out [2]string
		for k := range out {
			conn := &connReader{in: in, rng: rand.New(rand.NewSource(seed)), mode: mode, errAt: -1}
			var r io.Reader
			var cur func() int
			if k == 0 {
				l := &refLineLimitReader{R: conn, LineLimit: limit}
				r, cur = l, func() int { return l.curLineLength }
			} else {
				l := &lineLimitReader{R: conn, LineLimit: limit}
				r, cur = l, func() int { return l.curLineLength }
			}
			var t strings.Builder
			rs := rand.New(rand.NewSource(seed))
			for j := 0; j < 100; j++ {
				b := make([]byte, 1+rs.Intn(300))
				n, err := r.Read(b)
				fmt.Fprintf(&t, "%d %q %s cur=%d\n", n, b[:n], errString(err), cur())
				if err == io.EOF || (err != nil && j > 90) {
					break
				}
			}
			out[k] = t.String()
		}
		if out[0] != out[1] {
			t.Fatalf("limit %d input %q:\n--- reference\n%s--- new\n%s", limit, in, out[0], out[1])
		}
	}
}

func FuzzDataReaderSameAsReference(f *testing.F) {
	for _, tok := range dataTokens {
		f.Add([]byte(tok+"\r\n.\r\nQUIT\r\n"), int64(1), uint16(0), uint32(0))
	}
	f.Add([]byte("a\n.\nb\r\n.\r\nQUIT\r\n"), int64(2), uint16(80), uint32(0))
	f.Add([]byte("a\r\n.\rb\r\n.\r\nQUIT\r\n"), int64(3), uint16(3), uint32(7))
	f.Add([]byte(strings.Repeat("x", 300)+"\r\n.\r\n"), int64(4), uint16(100), uint32(1000))
	f.Add(realisticMessage(2000), int64(5), uint16(1000), uint32(0))
	f.Fuzz(func(t *testing.T, in []byte, seed int64, lineLimit uint16, maxBytes uint32) {
		rng := rand.New(rand.NewSource(seed))
		dc := randomCase(rng, in)
		dc.lineLimit = int(lineLimit)
		dc.maxBytes = int64(maxBytes)
		checkSame(t, dc)
	})
}

// realisticMessage is a message of about size bytes as a mail client sends
// it after DATA: headers, a text part with a dot-stuffed line, a base64
// attachment in 76-character lines, the end marker and the next command.
func realisticMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("Received: from client.example.org by gw.example.org; Sun, 6 Dec 2026 20:00:00 +0000\r\n" +
		"From: Dr A <a@example.org>\r\nTo: patient@example.net\r\nSubject: Results\r\n" +
		"Date: Sun, 6 Dec 2026 20:00:00 +0000\r\nMessage-ID: <1@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for i := 0; i < 10; i++ {
		b.WriteString("Dear patient, your results from the last visit are attached to this message.\r\n")
	}
	b.WriteString("..\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	raw := make([]byte, 57)
	rng := rand.New(rand.NewSource(7))
	for b.Len() < size-40 {
		rng.Read(raw)
		b.WriteString(base64.StdEncoding.EncodeToString(raw) + "\r\n")
	}
	b.WriteString("--b1--\r\n.\r\nQUIT\r\n")
	return b.Bytes()
}

// A realistic message gives the expected body through both stacks.
func TestDataReaderRealisticMessage(t *testing.T) {
	msg := realisticMessage(20 << 10)
	want := bytes.Replace(msg[:len(msg)-len(".\r\nQUIT\r\n")], []byte("\r\n..\r\n"), []byte("\r\n.\r\n"), 1)
	for _, s := range []stack{refStack, newStack} {
		ll, _ := s.ll(bytes.NewReader(msg), 1000)
		br := bufio.NewReader(ll)
		got, err := io.ReadAll(s.dr(br, true, 35<<20))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v, body equal: %v", s.name, err, bytes.Equal(got, want))
		}
		if rest, _ := io.ReadAll(br); string(rest) != "QUIT\r\n" {
			t.Fatalf("%s: rest %q", s.name, rest)
		}
	}
}

// BenchmarkDataReader reads a 20 KB message through the line limit reader,
// bufio.Reader and data reader as Conn stacks them, the connection giving
// at most 4 KB a read and the consumer reading 4 KB at a time
// (realistic: TLS records decrypted into the 4 KB bufio buffer).
func BenchmarkDataReader(b *testing.B) {
	msg := realisticMessage(20 << 10)
	for _, s := range []stack{refStack, newStack} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			src := bytes.NewReader(msg)
			out := make([]byte, 4096)
			ll, _ := s.ll(src, 1000)
			br := bufio.NewReaderSize(ll, 4096)
			for i := 0; i < b.N; i++ {
				src.Reset(msg)
				br.Reset(ll)
				resetLL(ll)
				dr := s.dr(br, true, 35<<20)
				for {
					_, err := dr.Read(out)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func resetLL(r io.Reader) {
	switch l := r.(type) {
	case *refLineLimitReader:
		l.curLineLength = 0
	case *lineLimitReader:
		l.curLineLength = 0
	}
}
