-- First start of the compose PostgreSQL only (docker-entrypoint-initdb.d): the results DB next
-- to Airflow's metadata DB, with the same dev role as scripts/postgres.sh (role audio/audio).
CREATE ROLE audio LOGIN PASSWORD 'audio';
CREATE DATABASE audio_results OWNER audio;
