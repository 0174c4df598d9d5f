package index

// engine is the key-value store under the index: the index seals and
// sums, the engine keeps stored keys and sealed values, byte for byte the
// same in every engine (docs/FORMAT.md version 2 does not know which).
type engine interface {
	// update runs fn in a read-write transaction that commits as a whole
	// when fn returns nil. An engine may run fn more than once (etcd
	// retries on a conflict): fn must have no effect outside its store.
	update(fn func(store) error) error
	// view runs fn on a consistent snapshot.
	view(fn func(store) error) error
	close() error
}

// store is one transaction of an engine.
type store interface {
	// get returns the sealed value at sk, nil if there is none. The slice
	// is valid until the transaction ends.
	get(sk []byte) ([]byte, error)
	// put stores sealed at sk; it may keep the slice (every caller
	// hands it a value it made for this put and never changes).
	put(sk, sealed []byte) error
	delete(sk []byte) error
	// scan calls fn in key order for every stored key starting with
	// prefix; sk and sealed are valid only during the call.
	scan(prefix []byte, fn func(sk, sealed []byte) error) error
}
