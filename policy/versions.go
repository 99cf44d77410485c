package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/phigate/phigate/store"
	"github.com/pmezard/go-difflib/difflib"
)

// Versions keeps the policy's history: every change is a new version with
// its author, time and note; rolling back saves an old text as a new
// version, so the history only grows.
type Versions struct {
	Store      store.Store
	Engine     *Engine
	Detectors  []string // known detector names
	OrgDomains []string // for the shipped default
	Now        func() time.Time
}

func (v *Versions) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Load activates the newest version, installing the shipped policy as
// version 1 on a fresh database.
func (v *Versions) Load(ctx context.Context) error {
	_, err := v.Refresh(ctx)
	if errors.Is(err, store.ErrNotFound) {
		_, err = v.Apply(ctx, "system", ShippedFor(v.OrgDomains), "shipped default")
	}
	return err
}

// Refresh activates the newest version if it is newer than the active one
// (another node or the CLI may have applied it) and reports whether it did.
func (v *Versions) Refresh(ctx context.Context) (bool, error) {
	latest, err := v.Store.LatestPolicyVersion(ctx)
	if err != nil {
		return false, err
	}
	if _, cur := v.Engine.Current(); cur == latest.ID {
		return false, nil
	}
	doc, err := Parse([]byte(latest.Body), v.Detectors)
	if err != nil {
		return false, fmt.Errorf("policy version %d: %w", latest.ID, err)
	}
	v.Engine.Set(doc, latest.ID)
	return true, nil
}

// Apply validates text and saves it as the new active version.
func (v *Versions) Apply(ctx context.Context, authorID, text, note string) (int64, error) {
	doc, err := Parse([]byte(text), v.Detectors)
	if err != nil {
		return 0, err
	}
	id, err := v.Store.AddPolicyVersion(ctx, store.PolicyVersion{AuthorID: authorID, CreatedAt: v.now(), Note: note, Body: text})
	if err != nil {
		return 0, err
	}
	v.Engine.Set(doc, id)
	return id, nil
}

// Rollback makes version to active again, as a new version.
func (v *Versions) Rollback(ctx context.Context, authorID string, to int64) (int64, error) {
	old, err := v.Store.PolicyVersionByID(ctx, to)
	if err != nil {
		return 0, err
	}
	return v.Apply(ctx, authorID, old.Body, fmt.Sprintf("rollback to version %d", to))
}

// Diff is a unified diff from version a to version b.
func (v *Versions) Diff(ctx context.Context, a, b int64) (string, error) {
	va, err := v.Store.PolicyVersionByID(ctx, a)
	if err != nil {
		return "", err
	}
	vb, err := v.Store.PolicyVersionByID(ctx, b)
	if err != nil {
		return "", err
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(va.Body), B: difflib.SplitLines(vb.Body),
		FromFile: fmt.Sprintf("version %d", a), ToFile: fmt.Sprintf("version %d", b), Context: 2,
	})
}

// Summary is one line of history.
func Summary(p store.PolicyVersion) string {
	return fmt.Sprintf("%d\t%s\t%s\t%s", p.ID, p.CreatedAt.Format(time.RFC3339), p.AuthorID, strings.ReplaceAll(p.Note, "\n", " "))
}
