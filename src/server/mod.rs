pub mod journal_file;
