package main

import "testing"

func TestParseStoreURL(t *testing.T) {
	for _, tc := range []struct {
		in             string
		bucket, prefix string
		ok             bool
	}{
		{"s3://sfd", "sfd", "", true},
		{"s3://sfd/", "sfd", "", true},
		{"s3://sfd/blobs", "sfd", "blobs", true},
		{"s3://sfd/a/b/", "sfd", "a/b", true},
		{"s3:///blobs", "", "", false},
		{"http://sfd/blobs", "", "", false},
		{"sfd/blobs", "", "", false},
		{"s3://key:secret@sfd/blobs", "", "", false},
		{"s3://sfd/blobs?x=1", "", "", false},
		{"", "", "", false},
	} {
		b, p, err := parseStoreURL(tc.in)
		if (err == nil) != tc.ok || b != tc.bucket || p != tc.prefix {
			t.Errorf("parseStoreURL(%q) = %q, %q, %v", tc.in, b, p, err)
		}
	}
}
