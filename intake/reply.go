package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/phigate/phigate/audit"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/policy"
	"github.com/phigate/phigate/store"
)

// DefaultReplyMaxBytes limits a secure reply when the policy sets no limit.
const DefaultReplyMaxBytes = 10 << 20

var (
	ErrReplyNotAllowed = errors.New("replies to this message are not allowed by the organisation's policy")
	ErrReplyTooBig     = errors.New("the reply is too large")
	ErrReplyEmpty      = errors.New("the reply is empty")
)

// Reply is what a recipient writes back from the portal.
type Reply struct {
	Text        string
	Attachments []message.Attachment // Filename, ContentType, Data
}

// SendReply delivers a recipient's secure reply to the staff member who sent
// orig, through the smarthost over TLS, threaded (In-Reply-To, References),
// and keeps a copy sealed to the recipient in their own thread. It returns
// the id of that copy.
func (in *Intake) SendReply(ctx context.Context, rcpt *store.User, orig *store.Message, origView *message.View, r Reply, ip string) (string, error) {
	var dec policy.Decision
	_ = json.Unmarshal([]byte(orig.Decision), &dec)
	if dec.NoReply {
		return "", ErrReplyNotAllowed
	}
	limit := dec.ReplyMaxBytes
	if limit <= 0 {
		limit = DefaultReplyMaxBytes
	}
	size := int64(len(r.Text))
	for _, a := range r.Attachments {
		size += int64(len(a.Data))
	}
	if size > limit {
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrReplyTooBig, size, limit)
	}
	if strings.TrimSpace(r.Text) == "" && len(r.Attachments) == 0 {
		return "", ErrReplyEmpty
	}
	staff, err := in.Store.UserByID(ctx, orig.SenderID)
	if err != nil {
		return "", err
	}
	to, err := in.Identity.Email(staff)
	if err != nil {
		return "", err
	}
	from, err := in.Identity.Email(rcpt)
	if err != nil {
		return "", err
	}
	now := in.now()
	raw, err := buildReply(replyHeader{from: from, to: to, sender: in.Opts.NotifyFrom, hostname: in.Opts.Hostname,
		subject: origView.Subject, inReplyTo: origView.MessageID, references: origView.References, date: now}, r)
	if err != nil {
		return "", err
	}
	// The reply and the recipient's copy commit together; the outbound
	// queue then delivers it over TLS with retries.
	item, err := notify.NewOnwardItem(in.Keys, notify.Onward{From: in.Opts.NotifyFrom, To: []string{to}, Raw: raw}, now)
	if err != nil {
		return "", err
	}
	m, err := in.replyCopy(rcpt, orig, raw, now)
	if err != nil {
		return "", err
	}
	// The message.reply entry commits with the copy and the queued reply.
	entry := in.entry(ctx, Envelope{IP: ip, Sender: rcpt}, "message.reply", "message", orig.ID, "ok",
		map[string]string{"to": to, "size": fmt.Sprint(size), "copy": m.ID})
	if _, err := in.commit(ctx, store.Delivery{Messages: []store.Message{m}, Outbox: []store.OutboxItem{item}}, []audit.Entry{entry}); err != nil {
		return "", err
	}
	if in.Notifier != nil {
		in.Notifier.Kick()
	}
	return m.ID, nil
}

// replyCopy seals the recipient's own copy of a reply to them and escrow.
func (in *Intake) replyCopy(rcpt *store.User, orig *store.Message, raw []byte, now time.Time) (store.Message, error) {
	pub, err := in.Identity.PublicKey(rcpt)
	if err != nil {
		return store.Message{}, err
	}
	summary, err := json.Marshal(message.PreviewSummary(raw))
	if err != nil {
		return store.Message{}, err
	}
	body, err := pcrypto.Seal(raw, in.Keys.Gateway, pub, in.Keys.Escrow)
	if err != nil {
		return store.Message{}, err
	}
	sum, err := pcrypto.Seal(summary, in.Keys.Gateway, pub, in.Keys.Escrow)
	if err != nil {
		return store.Message{}, err
	}
	return store.Message{ID: store.NewID(), RecipientID: rcpt.ID, SenderID: rcpt.ID, KeyFpr: rcpt.KeyFpr,
		CreatedAt: now, ExpiresAt: orig.ExpiresAt, Size: int64(len(raw)), Policy: "reply",
		KeyPackets: body.KeyPackets, Body: body.Data, SummaryKeys: sum.KeyPackets, Summary: sum.Data,
		State: store.StateDelivered, ReplyTo: orig.ID}, nil
}

type replyHeader struct {
	from, to, sender, hostname string
	subject, inReplyTo         string
	references                 []string
	date                       time.Time
}

// buildReply writes an RFC 5322 reply threaded per RFC 5322 3.6.4.
func buildReply(h replyHeader, r Reply) ([]byte, error) {
	var hd mail.Header
	hd.SetDate(h.date)
	hd.SetAddressList("From", []*mail.Address{{Address: h.from}})
	hd.SetAddressList("Sender", []*mail.Address{{Address: h.sender}})
	hd.SetAddressList("To", []*mail.Address{{Address: h.to}})
	subject := h.subject
	if !strings.HasPrefix(strings.ToLower(subject), "re:") {
		subject = "Re: " + subject
	}
	hd.SetSubject(subject)
	hd.SetMessageID(store.NewID() + "@" + h.hostname)
	if h.inReplyTo != "" {
		hd.SetMsgIDList("In-Reply-To", []string{h.inReplyTo})
		hd.SetMsgIDList("References", append(append([]string{}, h.references...), h.inReplyTo))
	}
	hd.Set("X-Phigate-Secure-Reply", "yes")
	var buf bytes.Buffer
	w, err := mail.CreateWriter(&buf, hd)
	if err != nil {
		return nil, err
	}
	tw, err := w.CreateInline()
	if err != nil {
		return nil, err
	}
	var th mail.InlineHeader
	th.Set("Content-Type", "text/plain; charset=utf-8")
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	pw, err := tw.CreatePart(th)
	if err != nil {
		return nil, err
	}
	pw.Write([]byte(r.Text))
	pw.Close()
	tw.Close()
	for _, a := range r.Attachments {
		var ah mail.AttachmentHeader
		ct := a.ContentType
		if _, _, err := mime.ParseMediaType(ct); ct == "" || err != nil {
			ct = "application/octet-stream"
		}
		ah.Set("Content-Type", ct)
		ah.SetFilename(a.Filename)
		aw, err := w.CreateAttachment(ah)
		if err != nil {
			return nil, err
		}
		aw.Write(a.Data)
		aw.Close()
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
