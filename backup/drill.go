package backup

// PrivateTemp makes an owner-only temporary folder in dir (a restore
// drill's scratch folder, issue 14.5).
func PrivateTemp(dir string) (string, error) { return privateTemp(dir) }

// Scrub overwrites every file under dir with zeros and removes dir (best
// effort; see scrub).
func Scrub(dir string) { scrubDir(dir) }
