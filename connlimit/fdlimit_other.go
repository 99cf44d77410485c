//go:build !unix

package connlimit

// FDLimit is 0 (unknown) on this system.
func FDLimit() int { return 0 }
