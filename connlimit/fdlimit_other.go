//go:build !unix

package connlimit

func fdLimit() int { return 0 }
