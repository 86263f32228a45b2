-- glm-registry's state database as the release before nodes wrote it: the schema as SQLAlchemy's create_all
-- printed it from that release's registry/store.py, then a few rows of each table (tests/test_nodes.py)
CREATE TABLE artifact (
	id SERIAL NOT NULL,
	family VARCHAR NOT NULL,
	format VARCHAR NOT NULL,
	quantization VARCHAR NOT NULL,
	path TEXT NOT NULL,
	sha256 VARCHAR NOT NULL,
	size_bytes BIGINT NOT NULL,
	parent VARCHAR,
	recipe JSON,
	report JSON,
	created TIMESTAMP WITH TIME ZONE NOT NULL,
	missing_since TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (id),
	UNIQUE (path)
);
CREATE INDEX ix_artifact_family ON artifact (family);
CREATE TABLE user_family (
	id SERIAL NOT NULL,
	name VARCHAR NOT NULL,
	body JSON NOT NULL,
	source_path VARCHAR,
	registered_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_user_family_name ON user_family (name);
CREATE TABLE deployment (
	id SERIAL NOT NULL,
	family VARCHAR NOT NULL,
	format VARCHAR NOT NULL,
	quantization VARCHAR NOT NULL,
	engine VARCHAR NOT NULL,
	argv JSON NOT NULL,
	env JSON NOT NULL,
	host VARCHAR NOT NULL,
	port INTEGER NOT NULL,
	pid INTEGER,
	status VARCHAR NOT NULL,
	log_path VARCHAR,
	artifact_id INTEGER,
	started TIMESTAMP WITH TIME ZONE NOT NULL,
	stopped TIMESTAMP WITH TIME ZONE,
	process JSON,
	PRIMARY KEY (id),
	FOREIGN KEY(artifact_id) REFERENCES artifact (id)
);
CREATE INDEX ix_deployment_family ON deployment (family);
INSERT INTO artifact (family, format, quantization, path, sha256, size_bytes, parent, recipe, report, created, missing_since)
VALUES ('glm4-chat-1m', 'ggufv2', 'Q4_K_M', '/data/glm4-chat-1m-Q4_K_M.gguf', 'abababababababababababababababababababababababababababababababab', 6254000000,
        'THUDM/glm-4-9b-chat-1m', '{"quant": "Q4_K_M", "from": "F16"}', '{"kl_divergence": 0.01}', '2026-12-01 10:00:00+00', NULL);
INSERT INTO artifact (family, format, quantization, path, sha256, size_bytes, parent, recipe, report, created, missing_since)
VALUES ('glm-4.6', 'pytorch', 'none', '/data/glm-4.6', 'cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd', 5497558138880, NULL, NULL, NULL, '2026-12-01 10:00:00+00', '2026-12-01 10:00:00+00');
INSERT INTO user_family (name, body, source_path, registered_at)
VALUES ('my-glm', '{"name": "my-glm"}', '/home/me/my-glm.yaml', '2026-12-01 10:00:00+00');
INSERT INTO deployment (family, format, quantization, engine, argv, env, host, port, pid, status, log_path, artifact_id,
                        started, stopped, process)
VALUES ('glm4-chat-1m', 'ggufv2', 'Q4_K_M', 'llama.cpp', '["python3", "-m", "llama_cpp.server"]', '{}', '127.0.0.1',
        8080, 4242, 'stopped', '/logs/a.log', 1, '2026-12-01 10:00:00+00', '2026-12-01 10:00:00+00', NULL);
INSERT INTO deployment (family, format, quantization, engine, argv, env, host, port, pid, status, log_path, artifact_id,
                        started, stopped, process)
VALUES ('glm-4.6', 'pytorch', 'none', 'vllm', '["vllm", "serve", "/data/glm-4.6"]', '{"VLLM_X": "1"}', '127.0.0.1',
        8000, 4343, 'failed', '/logs/b.log', 2, '2026-12-01 10:00:00+00', '2026-12-01 10:00:00+00', '{"pid": 4343, "start": 1, "cmdline": ["vllm"]}');
