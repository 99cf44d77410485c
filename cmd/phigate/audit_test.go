package main

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// TestAuditVerifyCLI: `phigate audit verify` reports OK on an honest trail
// and the first broken entry after the database is edited directly; the
// export carries the chain head.
func TestAuditVerifyCLI(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	secret := addStaff(t, dir, "dr.audit@clinic.example", "laptop")
	for i := 0; i < 3; i++ {
		m := newMsg("dr.audit@clinic.example", "audit.patient@example.net", "audit")
		if err := submit(p.SMTP, "dr.audit@clinic.example", secret, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	p.stop()

	r := runCLI(t, "", "audit", "verify", "--data", dir)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "OK:") {
		t.Fatalf("verify on an honest trail: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "audit", "export", "--data", dir, "--format", "csv")
	if r.code != 0 || !strings.Contains(r.stdout, "# head") || !strings.Contains(r.stdout, "smtp.auth") {
		t.Fatalf("export: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Edit entry 5 behind phigate's back (dropping the append-only
	// triggers first, as an attacker with the file could).
	db, err := sql.Open("sqlite", filepath.Join(dir, "phigate.db"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'trigger'`)
	if err != nil {
		t.Fatal(err)
	}
	var triggers []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, tr := range triggers {
		if _, err := db.Exec(`DROP TRIGGER ` + tr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`UPDATE audit_log SET action = 'smtp.nothing' WHERE seq = 5`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r = runCLI(t, "", "audit", "verify", "--data", dir)
	if r.code != 1 || !strings.Contains(r.stdout, "BROKEN at entry 5") {
		t.Errorf("verify after tampering: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
