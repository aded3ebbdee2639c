package main

import "context"

func runBench(ctx context.Context, c *cli, args []string) error { return usageError("todo") }
