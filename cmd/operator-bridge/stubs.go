package main

import "context"

func runDemo(ctx context.Context, c *cli, args []string) error   { return usageError("todo") }
func runBench(ctx context.Context, c *cli, args []string) error  { return usageError("todo") }
