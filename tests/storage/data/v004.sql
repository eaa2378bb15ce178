BEGIN TRANSACTION;
CREATE TABLE account (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name VARCHAR(64) NOT NULL UNIQUE,
            password_hash VARCHAR(255) NOT NULL,
            is_admin INTEGER NOT NULL DEFAULT 0,
            created_at DATETIME NOT NULL
        );
INSERT INTO "account" VALUES(1,'ann','$argon2id$fake',1,'2026-12-01 18:30:29.675526+00:00');
CREATE TABLE conversation (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user VARCHAR(255) NOT NULL DEFAULT '',
            title VARCHAR(255) NOT NULL DEFAULT '',
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL
        );
INSERT INTO "conversation" VALUES(1,'ann','hello','2026-12-01 18:30:29.674613+00:00','2026-12-01 18:30:29.674616+00:00');
CREATE TABLE imagefile (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL REFERENCES imagejob (id) ON DELETE CASCADE,
            "index" INTEGER NOT NULL,
            path VARCHAR(255) NOT NULL,
            seed INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL
        );
INSERT INTO "imagefile" VALUES(1,1,0,'2026-01-01/000001-0-0.png',0,64,64);
INSERT INTO "imagefile" VALUES(2,2,0,'2026-01-01/000002-0-1.png',1,64,64);
CREATE TABLE imagejob (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user VARCHAR(255) NOT NULL DEFAULT '',
            created_at DATETIME NOT NULL,
            finished_at DATETIME,
            backend VARCHAR(255) NOT NULL,
            model VARCHAR(255) NOT NULL,
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL DEFAULT '',
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            steps INTEGER NOT NULL,
            cfg_scale REAL NOT NULL,
            seed INTEGER NOT NULL,
            seed_used INTEGER,
            sampler VARCHAR(255) NOT NULL,
            batch_count INTEGER NOT NULL DEFAULT 1,
            status VARCHAR(255) NOT NULL DEFAULT 'running',
            error TEXT NOT NULL DEFAULT '',
            duration_s REAL,
            cached INTEGER NOT NULL DEFAULT 0,
            extra TEXT NOT NULL DEFAULT '{}'
        , cache_key VARCHAR(64));
INSERT INTO "imagejob" VALUES(1,'','2026-12-01 18:30:29.669628+00:00',NULL,'diffusers','m','a red fox','',64,64,2,7.5,0,0,'Euler',1,'done','',1.25,0,'{}',NULL);
INSERT INTO "imagejob" VALUES(2,'','2026-12-01 18:30:29.674142+00:00',NULL,'diffusers','m','a blue fox','',64,64,2,7.5,1,1,'Euler',1,'done','',1.25,1,'{}',NULL);
CREATE TABLE message (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversation (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role VARCHAR(16) NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            reasoning TEXT NOT NULL DEFAULT '',
            status VARCHAR(16) NOT NULL DEFAULT 'done',
            error TEXT NOT NULL DEFAULT '',
            finish_reason VARCHAR(16) NOT NULL DEFAULT '',
            model VARCHAR(255) NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_s REAL,
            duration_s REAL,
            created_at DATETIME NOT NULL, cache_key VARCHAR(64), cached INTEGER NOT NULL DEFAULT 0,
            UNIQUE (conversation_id, position)
        );
INSERT INTO "message" VALUES(1,1,0,'user','hello','','done','','','','{}',0,0,0,NULL,NULL,'2026-12-01 18:30:29.674810+00:00',NULL,0);
INSERT INTO "message" VALUES(2,1,1,'assistant','hi','think','done','','','','{}',0,0,0,NULL,NULL,'2026-12-01 18:30:29.675082+00:00',NULL,1);
CREATE TABLE migrations (name VARCHAR(255) PRIMARY KEY, applied_at DATETIME NOT NULL);
INSERT INTO "migrations" VALUES('001_image_jobs','2026-12-01T18:30:29.668336+00:00');
INSERT INTO "migrations" VALUES('002_conversations','2026-12-01T18:30:29.668625+00:00');
INSERT INTO "migrations" VALUES('003_accounts_and_cache','2026-12-01T18:30:29.669308+00:00');
INSERT INTO "migrations" VALUES('004_reply_drafts','2026-12-01T18:30:29.669528+00:00');
CREATE TABLE replydraft (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversation (id) ON DELETE CASCADE,
            answers_id INTEGER NOT NULL REFERENCES message (id) ON DELETE CASCADE,
            mode VARCHAR(16) NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            reasoning TEXT NOT NULL DEFAULT '',
            model VARCHAR(255) NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            started_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL
        );
INSERT INTO "replydraft" VALUES(1,1,1,'send','part','','','{}','2026-12-01 18:30:29.675298+00:00','2026-12-01 18:30:29.675299+00:00');
CREATE INDEX imagejob_user ON imagejob (user);
CREATE INDEX imagejob_created_at ON imagejob (created_at);
CREATE INDEX imagejob_status ON imagejob (status);
CREATE INDEX imagefile_job_id ON imagefile (job_id);
CREATE INDEX conversation_user_updated ON conversation (user, updated_at);
CREATE INDEX imagejob_cache_key ON imagejob (user, cache_key);
CREATE INDEX message_cache_key ON message (cache_key);
CREATE INDEX replydraft_conversation_id ON replydraft (conversation_id);
CREATE INDEX replydraft_answers_id ON replydraft (answers_id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('imagejob',2);
INSERT INTO "sqlite_sequence" VALUES('imagefile',2);
INSERT INTO "sqlite_sequence" VALUES('conversation',1);
INSERT INTO "sqlite_sequence" VALUES('message',2);
INSERT INTO "sqlite_sequence" VALUES('replydraft',1);
INSERT INTO "sqlite_sequence" VALUES('account',1);
COMMIT;
