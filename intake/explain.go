package intake

import (
	"context"
	"errors"
	"strings"

	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/policy"
)

// Explanation answers "what would the policy do" for one recipient: the
// decision, why earlier rules did not match, and the detectors that fired
// (counts only).
type Explanation struct {
	Recipient string          `json:"recipient"`
	Decision  policy.Decision `json:"decision"`
	Steps     []policy.Step   `json:"steps"`
}

type explainer interface {
	Explain(in policy.Input) (policy.Decision, []policy.Step)
}

// Explain evaluates the active policy for a sender, recipients and an
// optional sample message, delivering nothing (admin page, API and
// `phigate policy explain`).
func (in *Intake) Explain(ctx context.Context, from string, to []string, raw []byte) ([]Explanation, error) {
	ex, ok := in.Policy.(explainer)
	if !ok {
		return nil, errors.New("this policy cannot explain its decisions")
	}
	role := ""
	if u, err := in.Identity.UserByEmail(ctx, from); err == nil {
		role = u.Role
	}
	facts := in.facts(raw, message.Parse(raw))
	var out []Explanation
	for _, t := range to {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		addr, err := identity.ParseAddr(t)
		if err != nil {
			return nil, err
		}
		has := false
		if in.RecipientKeys != nil {
			if has, err = in.RecipientKeys.HasKey(ctx, addr); err != nil {
				return nil, err
			}
		}
		dec, steps := ex.Explain(policy.Input{Sender: from, SenderRole: role, Recipient: addr, RecipientHasKey: has, Facts: facts})
		out = append(out, Explanation{Recipient: addr, Decision: dec, Steps: steps})
	}
	return out, nil
}
