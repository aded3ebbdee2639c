package main

import "context"

func runDemo(ctx context.Context, c *cli, args []string) error         { return usageError("todo") }
func runDeploy(ctx context.Context, c *cli, args []string) error       { return usageError("todo") }
func runStatus(ctx context.Context, c *cli, args []string) error       { return usageError("todo") }
func runWatch(ctx context.Context, c *cli, args []string) error        { return usageError("todo") }
func runEnvs(ctx context.Context, c *cli, args []string) error         { return usageError("todo") }
func runBench(ctx context.Context, c *cli, args []string) error        { return usageError("todo") }
