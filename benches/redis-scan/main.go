// Command redis-scan is the plain-client reference of the Redis → Parquet benchmark
// (benches/connectors.py): it reads every hash whose key matches a pattern the way SynqX
// does, SCAN MATCH … COUNT 1000 and one pipelined HGETALL per batch of keys, with a compiled
// client, so its time is what the server can serve rather than what Python can parse.
//
//	redis-scan REDIS_URL PATTERN
//
// It prints the number of hashes read and a checksum of every field of every hash: the sum,
// modulo 2^64, of the first 8 bytes (big-endian) of the SHA-256 of each hash's fields sorted
// by name, each name and value followed by a NUL byte. The sum does not depend on the order
// SCAN returns keys in, so the benchmark computes the same from its generator to prove the
// reference read everything.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"sort"

	"github.com/redis/go-redis/v9"
)

// Keys asked for per SCAN call, as SynqX asks.
const count = 1000

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: redis-scan REDIS_URL PATTERN")
		os.Exit(2)
	}
	options, err := redis.ParseURL(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: the Redis URL does not parse: %v\n", err)
		os.Exit(2)
	}
	client := redis.NewClient(options)
	defer client.Close()
	n, sum, err := scan(context.Background(), client, os.Args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: reading keys %q: %v\n", os.Args[2], err)
		os.Exit(1)
	}
	fmt.Printf("%d %016x\n", n, sum)
}

func scan(ctx context.Context, client *redis.Client, pattern string) (int, uint64, error) {
	var cursor, sum uint64
	n := 0
	names := make([]string, 0, 8)
	buffer := make([]byte, 0, 256)
	for {
		keys, next, err := client.Scan(ctx, cursor, pattern, count).Result()
		if err != nil {
			return n, sum, fmt.Errorf("SCAN: %w", err)
		}
		if len(keys) > 0 {
			pipe := client.Pipeline()
			reads := make([]*redis.MapStringStringCmd, len(keys))
			for i, key := range keys {
				reads[i] = pipe.HGetAll(ctx, key)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return n, sum, fmt.Errorf("HGETALL: %w", err)
			}
			for _, read := range reads {
				fields := read.Val()
				names = names[:0]
				for name := range fields {
					names = append(names, name)
				}
				sort.Strings(names)
				buffer = buffer[:0]
				for _, name := range names {
					buffer = append(buffer, name...)
					buffer = append(buffer, 0)
					buffer = append(buffer, fields[name]...)
					buffer = append(buffer, 0)
				}
				digest := sha256.Sum256(buffer)
				sum += binary.BigEndian.Uint64(digest[:8])
				n++
			}
		}
		cursor = next
		if cursor == 0 {
			return n, sum, nil
		}
	}
}
