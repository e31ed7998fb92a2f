# How `sam build` builds the two Lambda functions of template.yaml (`BuildMethod: makefile`),
# and how bench/lambda.sh builds the same bootstrap for this machine (`make lambda ARCH=`):
# crates/berth-lambda's `bootstrap` with Cargo.toml's `lambda` profile (small and quick to
# start), for arm64 (the functions' `Architectures`), into target/sam/bootstrap/. Needs
# cargo-lambda and zig (`pip install cargo-lambda ziglang`).

ARCH ?= --arm64

lambda:
	cargo lambda build --profile lambda $(ARCH) --bin bootstrap --lambda-dir target/sam

build-Registry build-Collector: lambda
	cp target/sam/bootstrap/bootstrap "$(ARTIFACTS_DIR)/bootstrap"

.PHONY: lambda build-Registry build-Collector
