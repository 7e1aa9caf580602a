mod cli;

mod serve;
