#!/usr/bin/perl
# Reads a TAP file with Perl's TAP::Parser (the consumer behind `prove`)
# and prints what it understood as JSON, for test-test-report.py to check
# the runner's TAP against a real consumer rather than against itself:
#
#   tap-parse.pl FILE
#
#   {"version": 13, "plan": "1..4", "good_plan": 1, "parse_errors": [],
#    "unknown": [lines it could not read], "tests": [{"number": 1,
#    "ok": 1, "description": "...", "directive": "SKIP"|"TODO"|"",
#    "explanation": "...", "yaml": {... the YAML block after it} }]}
#
# TAP::Parser reads a YAML block after a test line of TAP version 13 with
# its YAMLish reader; one it cannot read makes the whole parse die, which
# exits non-zero here.
use strict;
use warnings;
use JSON::PP;
use TAP::Parser;

@ARGV == 1 or die "usage: tap-parse.pl FILE\n";
open my $fh, '<:encoding(UTF-8)', $ARGV[0] or die "cannot read $ARGV[0]: $!\n";
my $tap = do { local $/; <$fh> };
close $fh;

my $parser = TAP::Parser->new( { tap => $tap } );
my ( @tests, @unknown );
while ( my $r = $parser->next ) {
    if ( $r->is_test ) {
        push @tests, {
            number      => $r->number + 0,
            ok          => $r->is_actual_ok ? 1 : 0,
            description => $r->description,
            directive   => $r->directive,
            explanation => $r->explanation,
        };
    }
    elsif ( $r->is_yaml ) {
        die "a YAML block before any test line\n" unless @tests;
        $tests[-1]{yaml} = $r->data;
    }
    elsif ( $r->is_unknown ) {
        push @unknown, $r->as_string;
    }
}
print JSON::PP->new->canonical->utf8->encode( {
    version      => $parser->version + 0,
    plan         => $parser->plan,
    good_plan    => $parser->is_good_plan ? 1 : 0,
    parse_errors => [ $parser->parse_errors ],
    unknown      => \@unknown,
    tests        => \@tests,
} ), "\n";
