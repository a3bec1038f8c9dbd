# The two commands from the README; both set up everything they need (idempotently).
.PHONY: quickstart test build bench
quickstart:
	@bash scripts/quickstart.sh
test:
	@bash scripts/test.sh
build:
	@bash scripts/build.sh
