//go:build race

package main

// With -race, TestMain builds the phigate binary with -race as well.
func init() { raceBuild = true }
