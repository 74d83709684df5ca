// Package imports holds one test, TestImportRules, which enforces the import
// rules the packages' doc.go files state (each rule quotes its doc.go), over
// `go list -json ./...` of the whole module: what a package's non-test code
// imports, directly or through other packages of the module, and what its
// tests import directly. It has no non-test code.
package imports
