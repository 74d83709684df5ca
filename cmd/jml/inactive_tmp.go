package main
import ("context";"errors";"io")
func cmdReportInactive(ctx context.Context, args []string, stdout, stderr io.Writer) error { return errors.New("todo") }
