mod cli;
mod reload;
mod serve;
mod util;
