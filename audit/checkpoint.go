package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Checkpoint records that the chain had reached Seq, whose MAC is MAC, at
// Time. Tag authenticates the line itself (HMAC under the audit MAC key),
// so a forged or edited checkpoint is recognised as such.
type Checkpoint struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	MAC  string    `json:"mac"` // hex
	Tag  string    `json:"tag"` // hex
}

// Checkpoint writes a checkpoint of the current head now (if the head moved
// past this trail's last checkpoint). Close calls it; an operator job may
// too.
func (t *Trail) Checkpoint(ctx context.Context) error {
	seq, mac, err := t.st.AuditHead(ctx)
	if err != nil {
		return err
	}
	return t.checkpoint(seq, mac)
}

func (t *Trail) checkpoint(seq int64, mac []byte) error {
	t.cpMu.Lock()
	defer t.cpMu.Unlock()
	if seq <= 0 || seq <= t.cpSeq {
		return nil
	}
	at := t.now().UTC().Round(0)
	cp := Checkpoint{Seq: seq, Time: at, MAC: hex.EncodeToString(mac),
		Tag: hex.EncodeToString(checkpointTag(t.macKey, seq, at.UnixNano(), mac))}
	t.log.Info("audit checkpoint", "seq", seq, "mac", cp.MAC, "time", at.Format(time.RFC3339Nano))
	if t.file != "" {
		line, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		if err := appendSync(t.file, append(line, '\n')); err != nil {
			t.log.Error("audit checkpoint not written", "file", t.file, "err", err)
			return fmt.Errorf("audit: checkpoint: %w", err)
		}
	}
	t.cpSeq = seq
	return nil
}

func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// prepareCheckpointFile creates the folder and ends a line torn by a crash,
// so the next checkpoint starts on a line of its own.
func prepareCheckpointFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, st.Size()-1); err != nil {
		return err
	}
	if last[0] != '\n' {
		return appendSync(path, []byte("\n"))
	}
	return nil
}

type cpLine struct {
	Checkpoint
	line int
	mac  []byte
}

// readCheckpoints returns the checkpoints in the file, in file order. A
// line that is not JSON is skipped (a crash can tear the last write); a
// line whose tag does not verify is a *BrokenError.
func (t *Trail) readCheckpoints() ([]cpLine, error) {
	if t.file == "" {
		return nil, nil
	}
	f, err := os.Open(t.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cpLine
	rd := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := rd.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var cp Checkpoint
			if json.Unmarshal(line, &cp) == nil {
				mac, err1 := hex.DecodeString(cp.MAC)
				tag, err2 := hex.DecodeString(cp.Tag)
				ok := false
				for _, k := range t.checkpointMACs() {
					ok = ok || err1 == nil && err2 == nil && hmac.Equal(tag, checkpointTag(k, cp.Seq, cp.Time.UnixNano(), mac))
				}
				if !ok {
					return nil, &BrokenError{Seq: cp.Seq, Reason: fmt.Sprintf("checkpoint on line %d of %s is forged or edited", n, t.file)}
				}
				out = append(out, cpLine{Checkpoint: cp, line: n, mac: mac})
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// LastCheckpoint returns the checkpoint with the highest sequence number in
// CheckpointFile, or nil when there is none.
func (t *Trail) LastCheckpoint() (*Checkpoint, error) {
	cps, err := t.readCheckpoints()
	if err != nil {
		return nil, err
	}
	var best *Checkpoint
	for i := range cps {
		if best == nil || cps[i].Seq > best.Seq {
			best = &cps[i].Checkpoint
		}
	}
	return best, nil
}
